//! Monthly statements of volunteers' hours and travel (issue 18): what the expense
//! allowance (Aufwandsentschädigung) is paid from. One volunteer's month lists every hours
//! entry they wrote, by case; the month's totals list every volunteer for the
//! bookkeeping. Hours count for whoever wrote them as the readers attribute it (the bound
//! actor, not the entry's own claim: `store::authorship`), and hours of cases the purge
//! job deleted since count from the figures it kept, so a statement never changes after
//! the fact.

use std::collections::BTreeMap;

use lotse_protocol::DocumentId;
use serde::Serialize;

use crate::app::AppState;
use crate::app::error::Result;
use crate::store::Volunteer;

/// One hours entry on a statement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Line {
    /// The case's id (it survives rewrites of the case).
    pub case_id: String,
    pub case_label: String,
    /// `YYYY-MM-DD`.
    pub date: String,
    pub minutes: u32,
    pub travel_minutes: u32,
    pub kind: String,
}

/// One volunteer's month.
#[derive(Debug, Clone, Serialize)]
pub struct Statement {
    pub volunteer: Volunteer,
    /// `YYYY-MM`.
    pub month: String,
    /// Oldest first.
    pub lines: Vec<Line>,
    /// Hours of cases deleted since (kept as figures only, without case or day).
    pub deleted_cases_minutes: u64,
    pub deleted_cases_travel_minutes: u64,
    pub minutes: u64,
    pub travel_minutes: u64,
}

/// One volunteer's totals in a month.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Total {
    pub volunteer_id: String,
    pub name: String,
    pub entries: usize,
    pub minutes: u64,
    pub travel_minutes: u64,
}

/// `YYYY-MM`, a real month.
pub fn valid_month(month: &str) -> bool {
    let b = month.as_bytes();
    b.len() == 7
        && b[4] == b'-'
        && month[..4]
            .parse::<u16>()
            .is_ok_and(|y| (1970..=9999).contains(&y))
        && month[5..]
            .parse::<u8>()
            .is_ok_and(|m| (1..=12).contains(&m))
}

/// Every hours entry of `month` in the organisation's cases, by who wrote it.
async fn lines_by_author(
    state: &AppState,
    organisation_id: &str,
    month: &str,
) -> Result<BTreeMap<String, Vec<Line>>> {
    let mut out: BTreeMap<String, Vec<Line>> = BTreeMap::new();
    for raw in state.store.case_document_ids(organisation_id).await? {
        let Ok(id) = raw.parse::<DocumentId>() else {
            continue;
        };
        let Some((view, by)) = crate::exports::read_attributed(state, organisation_id, id).await?
        else {
            continue;
        };
        let case_id = state.store.case_of(&id).await?;
        for h in view.hours.iter().filter(|h| h.date.starts_with(month)) {
            let author = by.hours(h.id.as_str(), &h.author).author().to_owned();
            out.entry(author).or_default().push(Line {
                case_id: case_id.clone(),
                case_label: view.label.clone(),
                date: h.date.clone(),
                minutes: h.minutes,
                travel_minutes: h.travel_minutes,
                kind: h.kind.clone(),
            });
        }
    }
    for lines in out.values_mut() {
        lines.sort_by(|a, b| (&a.date, &a.case_label).cmp(&(&b.date, &b.case_label)));
    }
    Ok(out)
}

/// One volunteer's statement for `month`; `None` if there is no such volunteer.
pub async fn statement(
    state: &AppState,
    organisation_id: &str,
    volunteer_id: &str,
    month: &str,
) -> Result<Option<Statement>> {
    let Some(volunteer) = state.store.volunteer(organisation_id, volunteer_id).await? else {
        return Ok(None);
    };
    let lines = lines_by_author(state, organisation_id, month)
        .await?
        .remove(volunteer_id)
        .unwrap_or_default();
    let kept = state
        .store
        .kept_hours_by_author(organisation_id, month)
        .await?;
    let (kept_minutes, kept_travel) = kept.get(volunteer_id).copied().unwrap_or_default();
    let minutes = lines.iter().map(|l| u64::from(l.minutes)).sum::<u64>() + kept_minutes;
    let travel = lines
        .iter()
        .map(|l| u64::from(l.travel_minutes))
        .sum::<u64>()
        + kept_travel;
    Ok(Some(Statement {
        volunteer,
        month: month.to_owned(),
        lines,
        deleted_cases_minutes: kept_minutes,
        deleted_cases_travel_minutes: kept_travel,
        minutes,
        travel_minutes: travel,
    }))
}

/// Every volunteer's totals for `month` (those without hours too), by name.
pub async fn totals(state: &AppState, organisation_id: &str, month: &str) -> Result<Vec<Total>> {
    let lines = lines_by_author(state, organisation_id, month).await?;
    let kept = state
        .store
        .kept_hours_by_author(organisation_id, month)
        .await?;
    Ok(state
        .store
        .volunteers(organisation_id)
        .await?
        .into_iter()
        .map(|v| {
            let mine = lines.get(&v.id).map(Vec::as_slice).unwrap_or_default();
            let (kept_minutes, kept_travel) = kept.get(&v.id).copied().unwrap_or_default();
            Total {
                entries: mine.len(),
                minutes: mine.iter().map(|l| u64::from(l.minutes)).sum::<u64>() + kept_minutes,
                travel_minutes: mine
                    .iter()
                    .map(|l| u64::from(l.travel_minutes))
                    .sum::<u64>()
                    + kept_travel,
                volunteer_id: v.id,
                name: v.display_name,
            }
        })
        .collect())
}

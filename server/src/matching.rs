//! Ranks volunteers for a request: language fit first, then topic, availability in the
//! request's time window (in the organisation's local time), and current load.

use jiff::Timestamp;
use jiff::tz::TimeZone;
use serde::Serialize;

use crate::store::{Request, Volunteer};

/// Networks are German; availability slots are local wall-clock times.
pub const LOCAL_TZ: &str = "Europe/Berlin";

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Reason {
    /// Stable: language, topic, availability, load.
    pub code: String,
    pub ok: bool,
    pub de: String,
    pub en: String,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Candidate {
    pub volunteer_id: String,
    pub display_name: String,
    pub score: i64,
    /// Speaks at least one of the request's languages; only these are offered by `top`.
    pub eligible: bool,
    pub reasons: Vec<Reason>,
}

fn reason(code: &str, ok: bool, de: String, en: String) -> Reason {
    Reason {
        code: code.into(),
        ok,
        de,
        en,
    }
}

fn minutes(hhmm: &str) -> Option<i32> {
    let (h, m) = hhmm.split_once(':')?;
    Some(h.parse::<i32>().ok()? * 60 + m.parse::<i32>().ok()?)
}

/// Local weekday (1 = Monday) and minutes since midnight of a time in ms.
pub fn local(ms: i64) -> Option<(u8, i32)> {
    let tz = TimeZone::get(LOCAL_TZ).ok()?;
    let zoned = Timestamp::from_millisecond(ms).ok()?.to_zoned(tz);
    let weekday = zoned.weekday().to_monday_one_offset() as u8;
    Some((
        weekday,
        i32::from(zoned.hour()) * 60 + i32::from(zoned.minute()),
    ))
}

pub fn rank(
    request: &Request,
    volunteers: &[Volunteer],
    load: &dyn Fn(&str) -> i64,
) -> Vec<Candidate> {
    let window = local(request.starts_at.ms()).zip(local(request.ends_at.ms()));
    let mut out: Vec<Candidate> = volunteers
        .iter()
        .filter(|v| v.active)
        .map(|v| {
            let mut score = 0;
            let mut reasons = Vec::new();
            let spoken: Vec<&String> = request
                .languages
                .iter()
                .filter(|l| v.languages.contains(l))
                .collect();
            let all = spoken.len() == request.languages.len();
            let eligible = !spoken.is_empty();
            let codes = spoken
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(", ");
            if all {
                score += 40;
                reasons.push(reason(
                    "language",
                    true,
                    format!("spricht {codes}"),
                    format!("speaks {codes}"),
                ));
            } else if eligible {
                score += 20;
                reasons.push(reason(
                    "language",
                    true,
                    format!("spricht nur {codes}"),
                    format!("speaks only {codes}"),
                ));
            } else {
                let needed = request.languages.join(", ");
                reasons.push(reason(
                    "language",
                    false,
                    format!("spricht nicht {needed}"),
                    format!("does not speak {needed}"),
                ));
            }
            if v.topics.contains(&request.topic) {
                score += 20;
                reasons.push(reason(
                    "topic",
                    true,
                    format!("Thema {}", request.topic),
                    format!("topic {}", request.topic),
                ));
            } else {
                reasons.push(reason(
                    "topic",
                    false,
                    format!("Thema {} nicht im Profil", request.topic),
                    format!("topic {} not in profile", request.topic),
                ));
            }
            let fit = window.map(|((day, from), (end_day, to))| {
                v.availability
                    .iter()
                    .filter(|s| s.weekday == day)
                    .filter_map(|s| Some((minutes(&s.from)?, minutes(&s.to)?)))
                    .map(|(a, b)| {
                        let to = if end_day == day { to } else { 24 * 60 };
                        if a <= from && b >= to {
                            2
                        } else if a < to && b > from {
                            1
                        } else {
                            0
                        }
                    })
                    .max()
                    .unwrap_or(0)
            });
            match fit {
                Some(2) => {
                    score += 30;
                    reasons.push(reason(
                        "availability",
                        true,
                        "verfügbar im Zeitfenster".into(),
                        "available in the time window".into(),
                    ));
                }
                Some(1) => {
                    score += 15;
                    reasons.push(reason(
                        "availability",
                        true,
                        "teilweise verfügbar".into(),
                        "partly available".into(),
                    ));
                }
                _ => reasons.push(reason(
                    "availability",
                    false,
                    "laut Profil nicht verfügbar".into(),
                    "not available per profile".into(),
                )),
            }
            let n = load(&v.id);
            score -= (10 * n).min(30);
            reasons.push(reason(
                "load",
                n < 3,
                format!("{n} laufende Einsätze"),
                format!("{n} current assignments"),
            ));
            Candidate {
                volunteer_id: v.id.clone(),
                display_name: v.display_name.clone(),
                score,
                eligible,
                reasons,
            }
        })
        .collect();
    out.sort_by(|a, b| {
        b.eligible
            .cmp(&a.eligible)
            .then(b.score.cmp(&a.score))
            .then(a.display_name.cmp(&b.display_name))
    });
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::store::Slot;
    use crate::timefmt::Timestamp;

    fn volunteer(
        name: &str,
        languages: &[&str],
        topics: &[&str],
        slots: &[(u8, &str, &str)],
    ) -> Volunteer {
        Volunteer {
            id: name.into(),
            organisation_id: "o".into(),
            display_name: name.into(),
            languages: languages.iter().map(|s| (*s).into()).collect(),
            topics: topics.iter().map(|s| (*s).into()).collect(),
            availability: slots
                .iter()
                .map(|(d, f, t)| Slot {
                    weekday: *d,
                    from: (*f).into(),
                    to: (*t).into(),
                })
                .collect(),
            active: true,
            pledge_signed_on: None,
            trainings: Vec::new(),
            created_at: Timestamp::from_ms(0),
            updated_at: Timestamp::from_ms(0),
            erased_at: None,
        }
    }

    #[test]
    fn local_time_is_berlin() {
        // 2026-03-04 is a Wednesday; 13:00 UTC is 14:00 in Berlin (CET).
        let ms = 1_772_629_200_000;
        assert_eq!(local(ms), Some((3, 14 * 60)));
    }

    #[test]
    fn ranking_prefers_language_then_topic_availability_and_low_load() {
        let request = Request {
            id: "r".into(),
            organisation_id: "o".into(),
            source: "coordinator".into(),
            institution_kind: "jobcenter".into(),
            institution_name: "Jobcenter".into(),
            contact: None,
            person_label: "A.B.".into(),
            topic: "arbeit".into(),
            languages: vec!["ar".into()],
            starts_at: Timestamp::from_ms(1_772_629_200_000),
            ends_at: Timestamp::from_ms(1_772_629_200_000 + 3_600_000),
            place_area: "Innenstadt".into(),
            place_address: None,
            urgency: "normal".into(),
            description: String::new(),
            status: "open".into(),
            assigned_volunteer_id: None,
            case_document_id: None,
            created_at: Timestamp::from_ms(0),
            updated_at: Timestamp::from_ms(0),
            erased_at: None,
        };
        let vs = vec![
            volunteer("Busy", &["ar"], &["arbeit"], &[(3, "13:00", "18:00")]),
            volunteer(
                "Ideal",
                &["ar", "de"],
                &["arbeit"],
                &[(3, "13:00", "18:00")],
            ),
            volunteer("NoArabic", &["uk"], &["arbeit"], &[(3, "13:00", "18:00")]),
            volunteer("Wrong day", &["ar"], &["arbeit"], &[(1, "13:00", "18:00")]),
            volunteer("Partly", &["ar"], &["arbeit"], &[(3, "14:30", "18:00")]),
        ];
        let ranked = rank(&request, &vs, &|id| if id == "Busy" { 2 } else { 0 });
        let names: Vec<_> = ranked.iter().map(|c| c.display_name.as_str()).collect();
        assert_eq!(names, ["Ideal", "Partly", "Busy", "Wrong day", "NoArabic"]);
        assert!(!ranked[4].eligible);
        assert_eq!(ranked[0].score, 90);
        assert!(ranked[0].reasons.iter().all(|r| r.ok));
    }
}

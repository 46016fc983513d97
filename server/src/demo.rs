//! An invented Integrationslotsen network for trying Lotse out (`serve --demo`). All
//! names are made up; nothing here resembles a real person.

use lotse_protocol::automerge::Automerge;
use lotse_protocol::{
    CaseDoc, DocumentId, NewAppointment, NewCase, NewHours, NewNote, Status, Topic,
};

use crate::auth;
use crate::store::{
    Actor, Authored, NewCoordinator, NewDocument, NewRequest, NewVolunteer, RequestPatch, Slot,
    Store, Training, Writer, now_ms,
};

pub const ORG: &str = "Integrationslotsen Musterstadt";
pub const EMAIL: &str = "koordination@musterstadt.example";
pub const PASSWORD: &str = "Demo-Lotse-2026";
/// A second coordinator, role Koordination, with the same password.
pub const COLLEAGUE_EMAIL: &str = "jonas.becker@musterstadt.example";

struct V {
    name: &'static str,
    languages: &'static [&'static str],
    topics: &'static [&'static str],
    slots: &'static [(u8, &'static str, &'static str)],
    pledge: Option<&'static str>,
    active: bool,
}

const VOLUNTEERS: &[V] = &[
    V {
        name: "Amira Haddad",
        languages: &["ar", "de", "fr"],
        topics: &["gesundheit", "behoerden"],
        slots: &[(2, "14:00", "18:00"), (4, "09:00", "12:00")],
        pledge: Some("2025-09-12"),
        active: true,
    },
    V {
        name: "Olena Kovalenko",
        languages: &["uk", "ru", "de"],
        topics: &["bildung", "erziehung", "soziales"],
        slots: &[(1, "08:00", "13:00"), (3, "08:00", "13:00")],
        pledge: Some("2025-04-02"),
        active: true,
    },
    V {
        name: "Mehmet Yılmaz",
        languages: &["tr", "ku", "de"],
        topics: &["arbeit", "beruf", "behoerden"],
        slots: &[(5, "13:00", "17:00")],
        pledge: Some("2024-11-20"),
        active: true,
    },
    V {
        name: "Farid Rahimi",
        languages: &["fa", "ps", "de", "en"],
        topics: &["wohnen", "behoerden", "soziales"],
        slots: &[(2, "09:00", "12:00"), (6, "10:00", "14:00")],
        pledge: Some("2025-01-15"),
        active: true,
    },
    V {
        name: "Tigist Bekele",
        languages: &["ti", "am", "de", "en"],
        topics: &["gesundheit", "erziehung"],
        slots: &[(3, "14:00", "19:00")],
        pledge: Some("2025-06-30"),
        active: true,
    },
    V {
        name: "Ana Popescu",
        languages: &["ro", "de", "it"],
        topics: &["arbeit", "wohnen"],
        slots: &[(1, "15:00", "18:00"), (4, "15:00", "18:00")],
        pledge: Some("2026-02-10"),
        active: true,
    },
    V {
        name: "Katarzyna Nowak",
        languages: &["pl", "de"],
        topics: &["bildung", "beruf"],
        slots: &[(5, "08:00", "12:00")],
        pledge: Some("2023-10-05"),
        active: true,
    },
    V {
        name: "Sami Yousef",
        languages: &["ar", "ku", "de"],
        topics: &["behoerden", "wohnen", "arbeit"],
        slots: &[(1, "10:00", "16:00"), (2, "10:00", "16:00")],
        pledge: Some("2024-03-18"),
        active: true,
    },
    V {
        name: "Jean-Paul Mbeki",
        languages: &["fr", "ln", "de"],
        topics: &["bildung", "gesundheit"],
        slots: &[(6, "09:00", "13:00")],
        pledge: None,
        active: true,
    },
    V {
        name: "Dilan Aydın",
        languages: &["tr", "de", "en"],
        topics: &["erziehung", "soziales"],
        slots: &[],
        pledge: Some("2022-05-09"),
        active: false,
    },
];

/// A fresh one-time code for the demo's first active volunteer, valid for a week, so a
/// newcomer can open the volunteers' web app at once: (volunteer's name, code). `None`
/// when the demo's coordinator or volunteer is not there (a database seeded otherwise).
pub async fn enrollment_code(store: &Store) -> anyhow::Result<Option<(String, String)>> {
    let Some(coordinator) = store.coordinator_by_email(EMAIL).await? else {
        return Ok(None);
    };
    let org = &coordinator.organisation_id;
    let Some(volunteer) = store
        .volunteers(org)
        .await?
        .into_iter()
        .find(|v| v.active && v.display_name == VOLUNTEERS[0].name)
    else {
        return Ok(None);
    };
    let code = auth::new_enrollment_code();
    let hash = auth::code_hash(&code)
        .ok_or_else(|| anyhow::anyhow!("a fresh enrollment code does not normalise"))?;
    let week = 7 * 24 * 3_600_000;
    store
        .create_enrollment_code(org, &coordinator.id, &volunteer.id, &hash, now_ms() + week)
        .await?;
    Ok(Some((volunteer.display_name, code)))
}

/// Seeds the demo network if the database is empty; returns whether it did.
pub async fn seed_if_empty(store: &Store) -> anyhow::Result<bool> {
    if !store.is_empty().await? {
        return Ok(false);
    }
    let org = store.ensure_organisation(ORG).await?;
    let hash = tokio::task::spawn_blocking(|| auth::hash_password(PASSWORD))
        .await?
        .map_err(|e| anyhow::anyhow!("hashing the demo password: {e}"))?;
    let coordinator = store
        .create_coordinator(NewCoordinator {
            organisation_id: &org.id,
            email: EMAIL,
            display_name: "Dana Koordination",
            password_hash: &hash,
            role: crate::store::Role::Leitung,
        })
        .await?;
    // A colleague in the daily work: the team page shows both roles.
    store
        .create_coordinator(NewCoordinator {
            organisation_id: &org.id,
            email: COLLEAGUE_EMAIL,
            display_name: "Jonas Becker",
            password_hash: &hash,
            role: crate::store::Role::Koordination,
        })
        .await?;
    let mut ids = Vec::new();
    for (i, v) in VOLUNTEERS.iter().enumerate() {
        // The Basislehrgang comes with the pledge; some have been to further sessions.
        let mut trainings: Vec<Training> = v
            .pledge
            .map(|d| Training {
                name: "Basislehrgang Integrationslotsen".into(),
                completed_on: d.to_owned(),
            })
            .into_iter()
            .collect();
        if v.pledge.is_some() && i % 3 == 0 {
            trainings.push(Training {
                name: "Schulung Aufenthaltsrecht".into(),
                completed_on: "2025-10-14".into(),
            });
        }
        if v.pledge.is_some() && i % 4 == 1 {
            trainings.push(Training {
                name: "Supervision".into(),
                completed_on: "2026-02-05".into(),
            });
        }
        let created = store
            .create_volunteer(
                &org.id,
                &coordinator.id,
                NewVolunteer {
                    display_name: v.name.to_owned(),
                    languages: v.languages.iter().map(|s| (*s).to_owned()).collect(),
                    topics: v.topics.iter().map(|s| (*s).to_owned()).collect(),
                    availability: v
                        .slots
                        .iter()
                        .map(|(weekday, from, to)| Slot {
                            weekday: *weekday,
                            from: (*from).to_owned(),
                            to: (*to).to_owned(),
                        })
                        .collect(),
                    active: v.active,
                    pledge_signed_on: v.pledge.map(str::to_owned),
                    trainings,
                },
            )
            .await?;
        ids.push(created.id);
    }
    seed_cases(store, &org.id, &ids).await?;
    seed_requests(store, &org.id, &coordinator.id, &ids).await?;
    Ok(true)
}

const HOUR: i64 = 3_600_000;
const DAY: i64 = 24 * HOUR;

fn day(ms: i64) -> String {
    crate::timefmt::format_ms(ms)[..10].to_owned()
}

struct DemoCase {
    label: &'static str,
    topic: Topic,
    languages: &'static [&'static str],
    volunteer: usize,
    status: Status,
    notes: &'static [(i64, &'static str)],
    appointments: &'static [(i64, i64, &'static str, &'static str)],
    hours: &'static [(i64, u32, u32, &'static str)],
}

/// Invented cases; times are days relative to today, so the demo always looks current.
const CASES: &[DemoCase] = &[
    DemoCase {
        label: "F.K.",
        topic: Topic::Gesundheit,
        languages: &["ar"],
        volunteer: 0,
        status: Status::Active,
        notes: &[
            (
                -20,
                "Erstgespräch in der Beratungsstelle, Termin beim Hausarzt vereinbart.",
            ),
            (
                -6,
                "Beim Hausarzt übersetzt; Überweisung zur Kardiologie. Nächster Schritt: Termin beim Facharzt.",
            ),
        ],
        appointments: &[(3, 10, "Praxis Dr. Beispiel, Marktstraße 5", "Kardiologie")],
        hours: &[(-20, 90, 30, "begleitung"), (-6, 120, 40, "begleitung")],
    },
    DemoCase {
        label: "Familie O.",
        topic: Topic::Bildung,
        languages: &["uk", "ru"],
        volunteer: 1,
        status: Status::Active,
        notes: &[
            (-12, "Schulanmeldung für beide Kinder erledigt."),
            (-2, "Elternabend: Fragen zur Ganztagsbetreuung geklärt."),
        ],
        appointments: &[(6, 8, "Grundschule Nord", "Gespräch mit der Klassenlehrerin")],
        hours: &[(-12, 60, 20, "begleitung"), (-2, 45, 20, "uebersetzung")],
    },
    DemoCase {
        label: "M.Y. (Patenschaft)",
        topic: Topic::Arbeit,
        languages: &["tr"],
        volunteer: 2,
        status: Status::Active,
        notes: &[
            (-40, "Patenschaft begonnen: monatliche Treffen."),
            (-9, "Bewerbungsunterlagen gemeinsam überarbeitet."),
        ],
        appointments: &[(10, 14, "Jobcenter Mitte", "Beratungstermin")],
        hours: &[
            (-40, 60, 0, "treffen"),
            (-25, 60, 0, "treffen"),
            (-9, 90, 15, "treffen"),
        ],
    },
    DemoCase {
        label: "S.R.",
        topic: Topic::Behoerden,
        languages: &["fa", "ps"],
        volunteer: 3,
        status: Status::Closed,
        notes: &[(-60, "Aufenthaltstitel verlängert, Fall abgeschlossen.")],
        appointments: &[],
        hours: &[(-62, 150, 45, "begleitung")],
    },
];

async fn seed_cases(
    store: &Store,
    organisation_id: &str,
    volunteers: &[String],
) -> anyhow::Result<()> {
    let now = now_ms();
    for c in CASES {
        let volunteer = &volunteers[c.volunteer];
        let mut doc = Automerge::new();
        let created = now - 70 * DAY;
        CaseDoc::create(
            &mut doc,
            &NewCase {
                organisation_id: organisation_id.to_owned(),
                label: c.label.into(),
                languages: c.languages.iter().map(|s| (*s).to_owned()).collect(),
                topic: c.topic,
                status: Status::Active,
            },
            created,
        )?;
        let kind = if c.label.contains("Patenschaft") {
            "patenschaft"
        } else {
            "einzelbegleitung"
        };
        CaseDoc::set_kind(&mut doc, kind, created)?;
        for (days, text) in c.notes {
            CaseDoc::add_note(
                &mut doc,
                &NewNote {
                    author: volunteer.clone(),
                    text: (*text).into(),
                },
                now + days * DAY,
            )?;
        }
        for (days, hour, place, purpose) in c.appointments {
            let start = (now + days * DAY) / DAY * DAY + hour * HOUR;
            CaseDoc::add_appointment(
                &mut doc,
                &NewAppointment {
                    start,
                    end: start + HOUR,
                    place: (*place).into(),
                    purpose: (*purpose).into(),
                    case_id: None,
                },
                now,
            )?;
        }
        for (days, minutes, travel, kind) in c.hours {
            CaseDoc::log_hours(
                &mut doc,
                &NewHours {
                    author: volunteer.clone(),
                    date: day(now + days * DAY),
                    minutes: *minutes,
                    travel_minutes: *travel,
                    kind: (*kind).into(),
                },
                now + days * DAY,
            )?;
        }
        if c.status != Status::Active {
            CaseDoc::set_status(&mut doc, c.status, now - 59 * DAY)?;
        }
        let summary = CaseDoc::summary(&doc, now)?;
        // The invented volunteer wrote it all, without a phone.
        let writer = Writer::Volunteer {
            volunteer_id: volunteer.clone(),
        };
        let actors = crate::hub::actors_of(&doc);
        store
            .create_document(NewDocument {
                id: DocumentId::random(),
                organisation_id,
                kind: "case",
                owner_volunteer_id: None,
                chunk: &lotse_protocol::save_snapshot(&doc),
                heads: &doc.get_heads(),
                shared_with: std::slice::from_ref(volunteer),
                summary: Some(&summary),
                created_by: None,
                authored: Some(Authored {
                    writer: &writer,
                    actors: &actors,
                }),
                device_limit: None,
            })
            .await?;
    }
    Ok(())
}

async fn seed_requests(
    store: &Store,
    organisation_id: &str,
    coordinator: &str,
    volunteers: &[String],
) -> anyhow::Result<()> {
    let now = now_ms();
    let actor = Actor {
        kind: "coordinator",
        id: coordinator,
    };
    let request = |kind: &str,
                   name: &str,
                   topic: &str,
                   languages: &[&str],
                   days: i64,
                   area: &str,
                   urgency: &str,
                   text: &str| NewRequest {
        source: "coordinator",
        institution_kind: kind.into(),
        institution_name: name.into(),
        contact: None,
        person_label: "—".into(),
        topic: topic.into(),
        languages: languages.iter().map(|s| (*s).to_owned()).collect(),
        starts_at: ((now + days * DAY) / DAY * DAY + 13 * HOUR).into(),
        ends_at: ((now + days * DAY) / DAY * DAY + 14 * HOUR + HOUR / 2).into(),
        place_area: area.into(),
        place_address: Some("Adresse wird nach Zusage mitgeteilt".into()),
        urgency: urgency.into(),
        description: text.into(),
    };
    store
        .create_request(
            organisation_id,
            actor,
            request(
                "jobcenter",
                "Jobcenter Mitte",
                "arbeit",
                &["fa"],
                2,
                "Innenstadt",
                "dringend",
                "Termin zur Eingliederungsvereinbarung",
            ),
        )
        .await?;
    let offered = store
        .create_request(
            organisation_id,
            actor,
            request(
                "auslaenderbehoerde",
                "Ausländerbehörde",
                "behoerden",
                &["ar"],
                5,
                "Rathaus",
                "normal",
                "Verlängerung des Aufenthaltstitels",
            ),
        )
        .await?;
    store
        .offer_request(
            organisation_id,
            actor,
            &offered.id,
            &[volunteers[0].clone(), volunteers[7].clone()],
        )
        .await?;
    let assigned = store
        .create_request(
            organisation_id,
            actor,
            request(
                "schule",
                "Grundschule Nord",
                "bildung",
                &["uk"],
                6,
                "Nordstadt",
                "normal",
                "Elterngespräch",
            ),
        )
        .await?;
    store
        .offer_request(
            organisation_id,
            actor,
            &assigned.id,
            &[volunteers[1].clone()],
        )
        .await?;
    store
        .accept_offer(organisation_id, &volunteers[1], "demo", &assigned.id)
        .await?;
    // Half a year of past requests, so the reports have numbers to show.
    let past: [(&str, &str, &[&str], usize); 6] = [
        ("jobcenter", "arbeit", &["ar"], 7),
        ("auslaenderbehoerde", "behoerden", &["fa"], 3),
        ("schule", "bildung", &["uk"], 1),
        ("arztpraxis", "gesundheit", &["ar"], 0),
        ("kita", "erziehung", &["tr"], 2),
        ("beratungsstelle", "wohnen", &["ro"], 5),
    ];
    for i in 0..36_i64 {
        let (kind, topic, languages, volunteer) = past[(i % 6) as usize];
        let days = -5 - i * 5;
        let r = store
            .create_request(
                organisation_id,
                actor,
                request(
                    kind,
                    "Einrichtung",
                    topic,
                    languages,
                    days,
                    "Innenstadt",
                    "normal",
                    "Begleitung",
                ),
            )
            .await?;
        if i % 4 == 3 {
            continue; // nobody found in time: expires
        }
        store
            .record_past_assignment(actor, &r.id, &volunteers[volunteer])
            .await?;
    }
    let cancelled = store
        .create_request(
            organisation_id,
            actor,
            request(
                "arztpraxis",
                "Praxis am Markt",
                "gesundheit",
                &["ti"],
                8,
                "Altstadt",
                "normal",
                "Vorsorgeuntersuchung",
            ),
        )
        .await?;
    store
        .update_request(
            organisation_id,
            actor,
            &cancelled.id,
            RequestPatch {
                status: Some("cancelled".into()),
                ..Default::default()
            },
        )
        .await?;
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::http::TOPICS;

    #[test]
    fn demo_data_is_valid() {
        for v in VOLUNTEERS {
            for l in v.languages {
                assert!(isolang::Language::from_639_1(l).is_some(), "{l}");
            }
            for t in v.topics {
                assert!(TOPICS.contains(t), "{t}");
            }
        }
    }
}

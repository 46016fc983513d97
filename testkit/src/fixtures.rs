//! What the tests create, as data: request bodies, appointment windows, intake forms and
//! a case document started on a phone. The calls that post them are on `TestServer`.

use lotse_protocol::CaseDoc;
use lotse_protocol::automerge::Automerge;
use serde_json::{Value, json};

/// A 90-minute window some days from now (requests in the past expire), as RFC 3339.
pub fn window(days_ahead: i64) -> (String, String) {
    let start = jiff::Timestamp::now()
        .checked_add(jiff::SignedDuration::from_hours(24 * days_ahead))
        .unwrap();
    let end = start
        .checked_add(jiff::SignedDuration::from_mins(90))
        .unwrap();
    (start.to_string(), end.to_string())
}

/// A request as the desk enters it: "A.K." has an appointment at the Jobcenter Mitte in
/// the Innenstadt. Only the required fields and the area; `with_fields` adds more.
pub fn request_body(topic: &str, languages: &[&str], starts: &str, ends: &str) -> Value {
    json!({
        "institution_kind": "jobcenter", "institution_name": "Jobcenter Mitte",
        "person_label": "A.K.", "topic": topic, "languages": languages,
        "starts_at": starts, "ends_at": ends, "place_area": "Innenstadt",
    })
}

/// `body` with the fields of the object `fields` set (added, or replaced).
pub fn with_fields(mut body: Value, fields: Value) -> Value {
    for (k, v) in fields.as_object().unwrap() {
        body[k] = v.clone();
    }
    body
}

/// The day after tomorrow, local time, as the intake form's date field wants it.
pub fn intake_date() -> String {
    jiff::Zoned::now()
        .checked_add(jiff::SignedDuration::from_hours(48))
        .unwrap()
        .date()
        .to_string()
}

/// A valid intake form: a parent-teacher talk of "M.S." at the Grundschule Nord
/// (Nordstadt, Schulweg 3) the day after tomorrow, 08:00-09:00, in `languages`, with the
/// honeypot left empty.
pub fn intake_fields(languages: &[&str]) -> Vec<(&'static str, String)> {
    let mut fields = vec![
        ("einrichtung_art", "schule".to_owned()),
        ("einrichtung_name", "Grundschule Nord".to_owned()),
        ("thema", "bildung".to_owned()),
    ];
    fields.extend(languages.iter().map(|l| ("sprache", (*l).to_owned())));
    fields.extend([
        ("datum", intake_date()),
        ("von", "08:00".to_owned()),
        ("bis", "09:00".to_owned()),
        ("stadtteil", "Nordstadt".to_owned()),
        ("adresse", "Schulweg 3".to_owned()),
        ("dringlichkeit", "normal".to_owned()),
        ("person", "M.S.".to_owned()),
        ("beschreibung", "Elterngespräch".to_owned()),
        ("website", String::new()),
    ]);
    fields
}

/// A mentoring pair started on a phone, without a request: the new case document
/// "Patenschaft R." (Arabic, Erziehung, active) of the organisation.
pub fn mentoring_case(organisation_id: String) -> Automerge {
    let mut doc = Automerge::new();
    CaseDoc::create(
        &mut doc,
        &lotse_protocol::NewCase {
            organisation_id,
            label: "Patenschaft R.".into(),
            languages: vec!["ar".into()],
            topic: lotse_protocol::Topic::Erziehung,
            status: lotse_protocol::Status::Active,
        },
        1_772_633_400_000,
    )
    .unwrap();
    doc
}

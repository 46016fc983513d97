//! Acceptance 5 at the FFI layer itself: bad input and calls after shutdown come back as
//! typed `LotseError`s (the Kotlin and Python tests in tests/bindings do the same through
//! the generated bindings).
#![allow(clippy::unwrap_used)]

mod common;

use lotse_core::ffi::{
    AvailabilityRecord, CaseTopic, LotseClient, LotseConfig, LotseError, NewAppointmentRecord,
    NewCaseRecord, NewHoursRecord,
};

fn open(dir: &common::TempDir, key: Vec<u8>) -> Result<std::sync::Arc<LotseClient>, LotseError> {
    LotseClient::open(LotseConfig {
        data_dir: dir.path().display().to_string(),
        server_url: "http://127.0.0.1:9".into(),
        key,
        trusted_certificates_pem: None,
    })
}

#[test]
fn ffi_calls_return_typed_errors() {
    let dir = common::TempDir::new("ffi");
    assert!(matches!(
        open(&dir, vec![1; 31]),
        Err(LotseError::InvalidInput { .. })
    ));
    let client = open(&dir, vec![1; 32]).unwrap();
    client.set_network_available(false);
    // Not enrolled: creating is refused, reading works.
    let err = client
        .create_case(NewCaseRecord {
            label: "A.B.".into(),
            topic: CaseTopic::Arbeit,
            languages: vec![],
        })
        .unwrap_err();
    assert!(matches!(err, LotseError::InvalidState { .. }), "{err:?}");
    assert!(client.list_cases().unwrap().is_empty());
    for bad in [
        "",
        "x",
        &"y".repeat(1_000_000),
        "automerge:",
        "4NMNnkMhL8jXrdJ9jamS58PAVdX0",
    ] {
        assert!(
            matches!(
                client.add_note(bad.to_owned(), "text".into()),
                Err(LotseError::InvalidInput { .. })
            ),
            "{}",
            bad.len()
        );
    }
    let unknown = "4NMNnkMhL8jXrdJ9jamS58PAVdXu".to_owned();
    assert!(matches!(
        client.get_case(unknown.clone()),
        Err(LotseError::NotFound { .. })
    ));
    assert!(matches!(
        client.edit_note(unknown.clone(), "z".repeat(10_000), "t".into()),
        Err(LotseError::InvalidInput { .. })
    ));
    assert!(matches!(
        client.add_appointment(
            unknown.clone(),
            NewAppointmentRecord {
                start_ms: i64::MIN,
                end_ms: i64::MAX,
                place: String::new(),
                purpose: String::new(),
            }
        ),
        Err(LotseError::InvalidInput { .. })
    ));
    assert!(matches!(
        client.log_hours(
            unknown.clone(),
            NewHoursRecord {
                date: "2026-03-04".into(),
                minutes: 60,
                travel_minutes: 0,
                kind: "begleitung".into(),
            }
        ),
        Err(LotseError::InvalidState { .. } | LotseError::NotFound { .. })
    ));
    assert!(matches!(
        client.appointments_between(i64::MAX, i64::MIN),
        Err(LotseError::InvalidInput { .. })
    ));
    assert!(matches!(
        client.monthly_hours(u16::MAX),
        Err(LotseError::InvalidInput { .. })
    ));
    assert!(matches!(
        client.set_availability(vec![AvailabilityRecord {
            weekday: 255,
            from: "\u{0}".into(),
            to: String::new(),
        }]),
        Err(LotseError::InvalidInput { .. })
    ));
    client.shutdown().unwrap();
    assert!(matches!(
        client.list_cases(),
        Err(LotseError::Closed { .. })
    ));
    assert!(matches!(
        client.add_note(unknown, "x".into()),
        Err(LotseError::Closed { .. })
    ));
    assert!(client.shutdown().is_ok());
    drop(client);
    assert!(matches!(
        open(&dir, vec![2; 32]),
        Err(LotseError::WrongKey { .. })
    ));
}

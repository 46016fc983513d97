//! Retention (issue 15): the organisation's retention settings, and the purge job that
//! carries them out: closed cases deleted (their figures kept, so the reports do not
//! change), finished requests' personal fields erased, old audit lines deleted, and on
//! PostgreSQL one instance purging at a time. On SQLite and PostgreSQL.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::erasure::{found_in_database, rows_of};
use common::sync_client::SyncClient;
use lotse_protocol::automerge::Automerge;
use lotse_protocol::{CaseDoc, DocumentId, Message, NewCase, NewHours, NewNote, Status, Topic};
use lotse_server::dashboard::{Cells, Month, Period, Report, compute};
use lotse_server::purge::{self, PurgeReport};
use lotse_server::store::{
    AuditEntry, Deleted, Deleting, DeletionReason, NewDocument, months_before,
};
use lotse_testkit::fixtures::{request_body, window, with_fields};
use lotse_testkit::{Backend, TestServer, eventually, on_both_backends};
use serde_json::{Value, json};
use sqlx::Row;

const SETTINGS: &str = "/api/v1/organisation/settings";
const DAY: i64 = 24 * 3_600_000;

fn now_ms() -> i64 {
    jiff::Timestamp::now().as_millisecond()
}

/// One pass of the purge on `s`, as if it were `now`.
async fn purge_at(s: &TestServer, now: i64) -> PurgeReport {
    purge::run_once(&s.state.store, &s.state.hub, now)
        .await
        .unwrap()
}

async fn set(s: &TestServer, token: &str, settings: Value) -> Value {
    let (status, body) = s.patch(SETTINGS, Some(token), settings).await;
    assert_eq!(status, 200, "{body}");
    body
}

type Figures = (
    Cells,
    BTreeMap<String, Cells>,
    BTreeMap<String, Cells>,
    BTreeMap<Month, Cells>,
);

/// The figures of a report, every breakdown.
fn figures(r: &Report) -> Figures {
    (
        r.total.clone(),
        r.by_topic.clone(),
        r.by_language.clone(),
        r.by_month.clone(),
    )
}

/// Today in the reports' local time, as hours entries name days.
fn today() -> String {
    jiff::Zoned::now()
        .in_tz("Europe/Berlin")
        .unwrap()
        .date()
        .to_string()
}

/// Changes the phone's copy of `id` and waits until the server has stored it.
async fn edit(
    s: &TestServer,
    phone: &mut SyncClient,
    id: DocumentId,
    change: impl FnOnce(&mut Automerge),
) {
    change(phone.docs.get_mut(&id).unwrap());
    phone.offer(id).await;
    phone.wait_until_stored(&s.store, id).await;
}

fn note(doc: &mut Automerge, author: &str, text: &str) {
    let note = NewNote {
        author: author.into(),
        text: text.into(),
    };
    CaseDoc::add_note(doc, &note, now_ms()).unwrap();
}

fn hours(doc: &mut Automerge, author: &str, minutes: u32, travel: u32) {
    let entry = NewHours {
        author: author.into(),
        date: today(),
        minutes,
        travel_minutes: travel,
        kind: "begleitung".into(),
    };
    CaseDoc::log_hours(doc, &entry, now_ms()).unwrap();
}

fn status(doc: &mut Automerge, status: Status) {
    CaseDoc::set_status(doc, status, now_ms()).unwrap();
}

/// A case that is closed from its first change, stored by the server itself.
async fn closed_case(s: &TestServer, organisation_id: &str) -> DocumentId {
    let mut doc = Automerge::new();
    let new = NewCase {
        organisation_id: organisation_id.into(),
        label: "Z.C.".into(),
        languages: vec!["uk".into()],
        topic: Topic::Soziales,
        status: Status::Closed,
    };
    CaseDoc::create(&mut doc, &new, now_ms()).unwrap();
    let id = DocumentId::random();
    let summary = CaseDoc::summary(&doc, now_ms()).unwrap();
    s.state
        .hub
        .create(
            NewDocument {
                id,
                organisation_id,
                kind: "case",
                owner_volunteer_id: None,
                chunk: &lotse_protocol::save_snapshot(&doc),
                heads: &doc.get_heads(),
                shared_with: &[],
                summary: Some(&summary),
                created_by: None,
                authored: None,
                device_limit: None,
            },
            doc,
        )
        .await
        .unwrap();
    id
}

async fn settings_are_kept_checked_and_audited(backend: Backend) {
    let s = TestServer::start(backend).await;
    let (org, coordinator) = s.new_org("Lotsen Fristen").await;
    let (status, settings) = s.get(SETTINGS, Some(&coordinator)).await;
    assert_eq!(status, 200);
    assert_eq!(
        settings,
        json!({"device_lease_days": 30, "case_retention_months": 24,
               "request_retention_days": 30, "audit_retention_months": 24}),
        "the defaults"
    );
    for (field, bad) in [
        ("case_retention_months", json!(-1)),
        ("case_retention_months", json!(121)),
        ("request_retention_days", json!(-1)),
        ("request_retention_days", json!(731)),
        ("audit_retention_months", json!(0)),
        ("audit_retention_months", json!(121)),
    ] {
        let mut change = json!({});
        change[field] = bad.clone();
        let (status, body) = s.patch(SETTINGS, Some(&coordinator), change).await;
        assert_eq!(
            (status, body["error"]["field"].as_str()),
            (422, Some(field)),
            "{field} = {bad}: {body}"
        );
    }
    let (_, unchanged) = s.get(SETTINGS, Some(&coordinator)).await;
    assert_eq!(unchanged, settings, "a refused change changes nothing");

    // 0 is allowed where the purge may act at once; fields left out stay.
    let changed = set(
        &s,
        &coordinator,
        json!({"case_retention_months": 0, "request_retention_days": 0, "audit_retention_months": 6}),
    )
    .await;
    let expected = json!({"device_lease_days": 30, "case_retention_months": 0,
                          "request_retention_days": 0, "audit_retention_months": 6});
    assert_eq!(changed, expected);
    assert_eq!(s.get(SETTINGS, Some(&coordinator)).await.1, expected);
    let changes: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM audit_events WHERE organisation_id = $1 \
         AND action = 'organisation.settings' AND actor_kind = 'coordinator'",
    )
    .bind(&org)
    .fetch_one(s.store.pool())
    .await
    .unwrap();
    assert_eq!(
        changes, 1,
        "the change is audited, the refusals are not changes"
    );

    // Another network's settings are its own.
    let (_, other) = s.new_org("Andere Lotsen").await;
    assert_eq!(
        s.get(SETTINGS, Some(&other)).await.1["case_retention_months"],
        24
    );
    s.stop().await;
}

const CLOSED_NOTE: &str = "Befund-QX7Z-Kardiologie";
const CLOSED_LABEL: &str = "FK-QX7Z";

async fn closed_cases_are_purged_and_the_report_stays(backend: Backend) {
    let s = TestServer::start(backend).await;
    let (org, coordinator) = s.new_org("Lotsen Aufbewahrung").await;
    let amira = s.volunteer(&coordinator, "Amira", &["ar", "fr"]).await;
    let closed = s
        .create_case(&coordinator, CLOSED_LABEL, "gesundheit", &["ar"], &[&amira])
        .await;
    let reopened = s
        .create_case(&coordinator, "R.O.", "wohnen", &["ar", "fr"], &[&amira])
        .await;
    let active = s
        .create_case(&coordinator, "A.B.", "bildung", &["fr"], &[&amira])
        .await;
    let (_, token) = s.device(&coordinator, &amira, "Telefon").await;
    let mut phone = SyncClient::connect(s.addr, &token, "phone").await;
    phone.catch_up().await;
    for case in [closed, reopened, active] {
        phone.fetch(case).await;
    }
    // Work on each case in several syncs (the text lands in more than one chunk).
    for (case, text) in [
        (closed, CLOSED_NOTE),
        (reopened, "Wohnung besichtigt"),
        (active, "Schule angemeldet"),
    ] {
        edit(&s, &mut phone, case, |doc| {
            note(doc, &amira, text);
            hours(doc, &amira, 90, 30);
        })
        .await;
        edit(&s, &mut phone, case, |doc| hours(doc, &amira, 45, 15)).await;
    }
    edit(&s, &mut phone, closed, |doc| status(doc, Status::Closed)).await;
    edit(&s, &mut phone, reopened, |doc| status(doc, Status::Closed)).await;
    edit(&s, &mut phone, reopened, |doc| status(doc, Status::Active)).await;
    assert!(found_in_database(&s, CLOSED_NOTE).await, "stored before");

    let period = Period::from_query("", now_ms());
    let before = compute(&s.state, &org, period).await.unwrap();
    assert_eq!(before.total.cases, 3);
    assert_eq!(before.total.minutes, 3 * (90 + 45));
    assert_eq!(before.total.travel, 3 * (30 + 15));

    // Closed just now: a month's retention keeps it.
    set(&s, &coordinator, json!({"case_retention_months": 1})).await;
    let kept = purge_at(&s, now_ms()).await;
    assert_eq!((kept.ran, kept.cases_deleted, kept.failed), (true, 0, 0));
    assert!(rows_of(&s, &closed).await > 0);

    set(&s, &coordinator, json!({"case_retention_months": 0})).await;
    let purged = purge_at(&s, now_ms()).await;
    assert_eq!((purged.cases_deleted, purged.failed), (1, 0), "{purged:?}");

    // The connected phone is told at once.
    let mut told = false;
    while let Ok(Some(m)) = phone.recv_within(Duration::from_secs(5)).await {
        if matches!(m, Message::Deleted { document_id, .. } if document_id == closed) {
            told = true;
            break;
        }
    }
    assert!(told, "the connected phone heard lotse-deleted");
    assert_eq!(rows_of(&s, &closed).await, 0, "no row of the case is left");
    let tomb = s.store.tombstone(&closed).await.unwrap().unwrap();
    assert_eq!(
        (tomb.reason.as_str(), tomb.kind.as_str()),
        ("retention", "case")
    );
    for needle in [CLOSED_NOTE, CLOSED_LABEL] {
        assert!(
            !found_in_database(&s, needle).await,
            "{needle} is gone from the database"
        );
    }
    let by_purge: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM audit_events WHERE actor_kind = 'system' AND actor_id = 'retention' \
         AND action = 'document.delete' AND subject_id = $1",
    )
    .bind(closed.to_string())
    .fetch_one(s.store.pool())
    .await
    .unwrap();
    assert_eq!(by_purge, 1, "the purge's deletion is in the audit trail");
    // Reopened and active cases stay.
    for case in [reopened, active] {
        s.case(&coordinator, &case).await;
    }
    let after = compute(&s.state, &org, period).await.unwrap();
    assert_eq!(
        figures(&after),
        figures(&before),
        "the purge kept the figures"
    );

    // A coordinator's deletion keeps them too.
    let (status, body) = s
        .request(
            reqwest::Method::DELETE,
            &format!("/api/v1/cases/{reopened}?reason=person-asked"),
            Some(&coordinator),
            None,
        )
        .await;
    assert_eq!(status, 204, "{body}");
    let after = compute(&s.state, &org, period).await.unwrap();
    assert_eq!(
        figures(&after),
        figures(&before),
        "the deletion kept the figures"
    );

    let again = purge_at(&s, now_ms()).await;
    assert_eq!((again.cases_deleted, again.failed), (0, 0), "nothing twice");
    s.stop().await;
}

async fn finished_requests_lose_their_personal_fields(backend: Backend) {
    let s = TestServer::start(backend).await;
    let (org, coordinator) = s.new_org("Lotsen Anfragen").await;
    let (starts, ends) = window(3);
    let personal = |marker: &str| {
        json!({"contact": format!("Telefon {marker}-Kontakt"),
               "place_address": format!("{marker}-Weg 7"),
               "description": format!("Arzttermin {marker}-Beschreibung"),
               "person_label": format!("{marker}-P")})
    };
    let finished = s
        .post_request(
            &coordinator,
            with_fields(
                request_body("gesundheit", &["ar"], &starts, &ends),
                personal("QX9F"),
            ),
        )
        .await;
    let open = s
        .post_request(
            &coordinator,
            with_fields(
                request_body("arbeit", &["tr"], &starts, &ends),
                personal("QX9O"),
            ),
        )
        .await;
    let path = format!("/api/v1/requests/{finished}");
    let (status, body) = s
        .patch(&path, Some(&coordinator), json!({"status": "cancelled"}))
        .await;
    assert_eq!(status, 200, "{body}");

    let now = now_ms();
    let month = |ms: i64| lotse_server::store::local_month(ms).unwrap();
    let period = Period::from_query(
        &format!("from={}&to={}", month(now), month(now + 5 * DAY)),
        now,
    );
    let before = compute(&s.state, &org, period).await.unwrap();
    assert_eq!((before.total.requests, before.total.placed), (2, 0));

    set(&s, &coordinator, json!({"request_retention_days": 1})).await;
    assert_eq!(purge_at(&s, now).await.requests_erased, 0, "not yet");
    assert_eq!(
        s.get(&path, Some(&coordinator)).await.1["contact"],
        "Telefon QX9F-Kontakt"
    );
    let erased = purge_at(&s, now + 2 * DAY).await;
    assert_eq!((erased.requests_erased, erased.failed), (1, 0));

    let (_, r) = s.get(&path, Some(&coordinator)).await;
    assert_eq!(
        (
            &r["contact"],
            &r["place_address"],
            &r["description"],
            &r["person_label"]
        ),
        (&Value::Null, &Value::Null, &json!(""), &json!("")),
        "{r}"
    );
    assert_eq!(
        (&r["topic"], &r["status"], &r["place_area"]),
        (
            &json!("gesundheit"),
            &json!("cancelled"),
            &json!("Innenstadt")
        ),
        "what the reports and the history need stays"
    );
    let erased_at: Option<i64> = sqlx::query_scalar("SELECT erased_at FROM requests WHERE id = $1")
        .bind(&finished)
        .fetch_one(s.store.pool())
        .await
        .unwrap();
    assert_eq!(erased_at, Some(now + 2 * DAY), "marked erased");
    assert!(!r["erased_at"].is_null(), "the API says so: {r}");
    // Reopening it, or writing new details into it, would start a request without the
    // rules a new one goes through.
    for patch in [json!({"status": "open"}), json!({"contact": "Telefon neu"})] {
        let (status, body) = s.patch(&path, Some(&coordinator), patch).await;
        assert_eq!(status, 409, "{body}");
    }
    assert!(
        !found_in_database(&s, "QX9F").await,
        "the erased fields are gone from the database"
    );
    let (_, still) = s
        .get(&format!("/api/v1/requests/{open}"), Some(&coordinator))
        .await;
    assert_eq!(
        still["contact"], "Telefon QX9O-Kontakt",
        "an open request keeps its details"
    );
    let lines: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM audit_events WHERE action = 'request.erase' AND subject_id = $1 \
         AND actor_kind = 'system'",
    )
    .bind(&finished)
    .fetch_one(s.store.pool())
    .await
    .unwrap();
    assert_eq!(lines, 1, "the erasure is in the audit trail");

    let after = compute(&s.state, &org, period).await.unwrap();
    assert_eq!(figures(&after), figures(&before), "the report is unchanged");
    assert_eq!(purge_at(&s, now + 2 * DAY).await.requests_erased, 0, "once");
    s.stop().await;
}

async fn audit_line(s: &TestServer, organisation_id: &str, at: i64) -> String {
    let id = uuid::Uuid::new_v4().to_string();
    sqlx::query(
        "INSERT INTO audit_events (id, organisation_id, at, actor_kind, actor_id, action, \
         subject_kind, subject_id) VALUES ($1, $2, $3, 'coordinator', 'c', 'document.read', 'document', 'd')",
    )
    .bind(&id)
    .bind(organisation_id)
    .bind(at)
    .execute(s.store.pool())
    .await
    .unwrap();
    id
}

async fn old_audit_lines_are_deleted(backend: Backend) {
    let s = TestServer::start(backend).await;
    let (a, _) = s.new_org("Lotsen Protokoll A").await;
    let (b, b_coordinator) = s.new_org("Lotsen Protokoll B").await;
    set(&s, &b_coordinator, json!({"audit_retention_months": 6})).await;
    let now = now_ms();
    let a_old = audit_line(&s, &a, months_before(now, 24) - DAY).await;
    let a_young = audit_line(&s, &a, months_before(now, 24) + DAY).await;
    let a_seven = audit_line(&s, &a, months_before(now, 7)).await;
    let b_old = audit_line(&s, &b, months_before(now, 6) - DAY).await;
    let b_young = audit_line(&s, &b, months_before(now, 6) + DAY).await;

    let report = purge_at(&s, now).await;
    assert_eq!(
        (report.audit_lines_deleted, report.failed),
        (2, 0),
        "{report:?}"
    );
    let exists = |id: String| {
        let pool = s.store.pool().clone();
        async move {
            sqlx::query("SELECT id FROM audit_events WHERE id = $1")
                .bind(id)
                .fetch_optional(&pool)
                .await
                .unwrap()
                .is_some()
        }
    };
    assert!(
        !exists(a_old).await && !exists(b_old).await,
        "older lines are gone"
    );
    assert!(
        exists(a_young).await && exists(a_seven).await && exists(b_young).await,
        "newer lines stay, each network by its own setting"
    );
    // The settings change of B is younger still, and stays.
    let settings: i64 = sqlx::query(
        "SELECT COUNT(*) AS n FROM audit_events WHERE organisation_id = $1 AND action = 'organisation.settings'",
    )
    .bind(&b)
    .fetch_one(s.store.pool())
    .await
    .unwrap()
    .get("n");
    assert_eq!(settings, 1);
    s.stop().await;
}

async fn one_instance_purges_at_a_time(backend: Backend) {
    let a = TestServer::start(backend).await;
    let b = TestServer::start_on(a.db.shared()).await;
    let (org, coordinator) = a.new_org("Lotsen Zwei Instanzen").await;
    set(&a, &coordinator, json!({"case_retention_months": 0})).await;
    let first = closed_case(&a, &org).await;

    // While one instance holds the purge lock, another one's pass does nothing there.
    let held = a.store.try_purge_lock().await.unwrap().unwrap();
    let report = purge_at(&b, now_ms()).await;
    match backend {
        Backend::Postgres => {
            assert_eq!(report, PurgeReport::default(), "skipped under the lock");
            assert!(rows_of(&a, &first).await > 0, "the case is still there");
        }
        // One instance per SQLite file: there is no lock to wait for.
        Backend::Sqlite => assert_eq!((report.ran, report.cases_deleted), (true, 1)),
    }
    held.release().await;
    let report = purge_at(&b, now_ms()).await;
    assert!(report.ran, "the lock was given back");
    assert_eq!(rows_of(&a, &first).await, 0);

    // Both instances at once: every case deleted once, nothing failed.
    let mut cases = Vec::new();
    for _ in 0..5 {
        cases.push(closed_case(&a, &org).await);
    }
    let (ra, rb) = tokio::join!(purge_at(&a, now_ms()), purge_at(&b, now_ms()));
    assert_eq!(ra.cases_deleted + rb.cases_deleted, 5, "{ra:?} {rb:?}");
    assert_eq!(ra.failed + rb.failed, 0, "{ra:?} {rb:?}");
    assert!(ra.ran || rb.ran);
    for case in &cases {
        assert_eq!(rows_of(&a, case).await, 0);
        assert!(a.store.tombstone(case).await.unwrap().is_some());
    }
    let deletions: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM audit_events WHERE action = 'document.delete' AND actor_id = 'retention'",
    )
    .fetch_one(a.store.pool())
    .await
    .unwrap();
    assert_eq!(deletions, 6, "one deletion per case");
    let kept: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM kept_cases")
        .fetch_one(a.store.pool())
        .await
        .unwrap();
    assert_eq!(kept, 6, "one set of figures per case");
    b.stop().await;
    a.stop().await;
}

async fn the_timer_purges_by_itself(backend: Backend) {
    let s = TestServer::start(backend).await;
    let (org, coordinator) = s.new_org("Lotsen Uhr").await;
    set(&s, &coordinator, json!({"case_retention_months": 0})).await;
    let case = closed_case(&s, &org).await;
    let purger = purge::spawn_every(
        s.state.store.clone(),
        s.state.hub.clone(),
        Duration::ZERO,
        Duration::from_millis(100),
    );
    eventually("the timer's purge", Duration::from_secs(20), || async {
        s.store.tombstone(&case).await.unwrap().is_some()
    })
    .await;
    drop(purger);
    s.stop().await;
}

/// What the purge's deletion checks in its own transaction, driven directly: a case
/// whose heads moved on since its figures were read, or that is not due, stays whole.
async fn a_deletion_checks_its_conditions_in_its_transaction(backend: Backend) {
    let s = TestServer::start(backend).await;
    let (org, _) = s.new_org("Lotsen Bedingungen").await;
    let case = closed_case(&s, &org).await;
    let closed_at: i64 =
        sqlx::query_scalar("SELECT closed_at FROM case_index WHERE document_id = $1")
            .bind(case.to_string())
            .fetch_one(s.store.pool())
            .await
            .unwrap();
    let audit = AuditEntry::document(
        &org,
        "system",
        "retention",
        "document.delete",
        &case.to_string(),
    );
    let delete = |deleting: Deleting<'static>| {
        let (store, org, audit) = (s.store.clone(), org.clone(), audit.clone());
        async move {
            store
                .delete_document(&org, &case, DeletionReason::Retention, &audit, deleting)
                .await
                .unwrap()
        }
    };
    let stale = delete(Deleting {
        heads: Some(&[]),
        ..Deleting::default()
    })
    .await;
    assert_eq!(stale, Deleted::Changed);
    let early = delete(Deleting {
        closed_before: Some(closed_at - 1),
        ..Deleting::default()
    })
    .await;
    assert_eq!(early, Deleted::NotDue);
    assert!(rows_of(&s, &case).await > 0, "both left it whole");
    assert!(s.store.tombstone(&case).await.unwrap().is_none());
    let due = delete(Deleting {
        closed_before: Some(closed_at),
        ..Deleting::default()
    })
    .await;
    assert!(matches!(due, Deleted::Done(_)), "{due:?}");
    assert_eq!(rows_of(&s, &case).await, 0);
    s.stop().await;
}

on_both_backends!(
    a_deletion_checks_its_conditions_in_its_transaction,
    settings_are_kept_checked_and_audited,
    closed_cases_are_purged_and_the_report_stays,
    finished_requests_lose_their_personal_fields,
    old_audit_lines_are_deleted,
    one_instance_purges_at_a_time,
    the_timer_purges_by_itself,
);

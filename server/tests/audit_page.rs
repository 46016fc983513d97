//! The dashboard's Protokoll (issue 15): the organisation's audit trail lists every read
//! of a request, a profile, a case (dashboard, API, a phone's sync) and every export,
//! narrows by who, what and when, pages newest first, never shows another organisation's
//! lines, and its CSV holds the same lines as the page. The printable Art. 15 pages hold
//! every note of their case and nothing of another, and leave their line in the trail.
//! On SQLite and PostgreSQL.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::HashSet;
use std::time::Duration;

use common::sync_client::SyncClient;
use lotse_protocol::{CaseDoc, DocumentId, NewHours, NewNote};
use lotse_server::store::AuditEntry;
use lotse_testkit::fixtures::window;
use lotse_testkit::{Backend, TestServer, on_both_backends};
use reqwest::header;

const PASSWORD: &str = "ein langes Passwort 42";
const EMAIL: &str = "koordination@lotsen-protokoll.example";
const WAIT: Duration = Duration::from_secs(20);

/// A dashboard page as a logged-in coordinator's browser gets it (the API's session token
/// is the dashboard's cookie): status and body.
async fn page(s: &TestServer, token: &str, path: &str) -> (u16, String) {
    page_in(s, token, path, "de-DE,de;q=0.9").await
}

async fn page_in(s: &TestServer, token: &str, path: &str, language: &str) -> (u16, String) {
    let res = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .get(s.url(path))
        .header(header::COOKIE, format!("lotse_session={token}"))
        .header(header::ACCEPT_LANGUAGE, language)
        .send()
        .await
        .unwrap();
    let status = res.status().as_u16();
    (status, res.text().await.unwrap())
}

/// One line of the trail as the page shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Line {
    id: String,
    at: i64,
    action: String,
    actor: String,
    subject_kind: String,
    subject: String,
}

fn attr(tag: &str, name: &str) -> String {
    let key = format!(" {name}=\"");
    let start = tag.find(&key).unwrap_or_else(|| panic!("{name} in {tag}")) + key.len();
    let end = start + tag[start..].find('"').unwrap();
    tag[start..end].to_owned()
}

/// The rows of the trail's table, top to bottom.
fn lines(body: &str) -> Vec<Line> {
    body.split("<tr data-id=\"")
        .skip(1)
        .map(|rest| {
            let tag = format!(" data-id=\"{}", &rest[..rest.find('>').unwrap()]);
            Line {
                id: attr(&tag, "data-id"),
                at: attr(&tag, "data-at").parse().unwrap(),
                action: attr(&tag, "data-action"),
                actor: attr(&tag, "data-actor"),
                subject_kind: attr(&tag, "data-subject-kind"),
                subject: attr(&tag, "data-subject"),
            }
        })
        .collect()
}

/// The trail's page at `query` (the page's own `audit.read` line among the rows when the
/// filter lets it through).
async fn trail(s: &TestServer, token: &str, query: &str) -> Vec<Line> {
    let (status, body) = page(s, token, &format!("/dashboard/audit?{query}")).await;
    assert_eq!(status, 200, "{body}");
    lines(&body)
}

fn count(lines: &[Line], action: &str, subject: &str) -> usize {
    lines
        .iter()
        .filter(|l| l.action == action && l.subject == subject)
        .count()
}

/// The CSV's records (quoted cells unquoted), header first.
fn csv(body: &str) -> Vec<Vec<String>> {
    let body = body.strip_prefix('\u{feff}').expect("a byte order mark");
    let mut records = Vec::new();
    let (mut record, mut cell, mut quoted) = (Vec::new(), String::new(), false);
    let mut chars = body.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                chars.next();
                cell.push('"');
            }
            ('"', _) => quoted = !quoted,
            (';', false) => record.push(std::mem::take(&mut cell)),
            ('\r', false) => {}
            ('\n', false) => {
                record.push(std::mem::take(&mut cell));
                records.push(std::mem::take(&mut record));
            }
            (c, _) => cell.push(c),
        }
    }
    records
}

/// A note and an hours entry written on the phone and synced to the server.
async fn write(c: &mut SyncClient, s: &TestServer, case: DocumentId, author: &str, texts: &[&str]) {
    c.fetch(case).await;
    let doc = c.docs.get_mut(&case).unwrap();
    for text in texts {
        let note = NewNote {
            author: author.into(),
            text: (*text).into(),
        };
        CaseDoc::add_note(doc, &note, 1_772_633_400_000).unwrap();
    }
    let hours = NewHours {
        author: author.into(),
        date: "2026-11-30".into(),
        minutes: 75,
        travel_minutes: 15,
        kind: "begleitung".into(),
    };
    CaseDoc::log_hours(doc, &hours, 1_772_633_400_000).unwrap();
    c.offer(case).await;
    c.wait_until_stored(&s.store, case).await;
}

async fn every_read_is_in_the_trail_and_the_filters_narrow_it(backend: Backend) {
    let s = TestServer::start(backend).await;
    let (org, me) = s.coordinator("Lotsen Protokoll", EMAIL, PASSWORD).await;
    let desk = s.login(EMAIL, PASSWORD).await;
    let amira = s.volunteer(&desk, "Amira", &["ar"]).await;
    let (device, phone_token) = s.device(&desk, &amira, "Telefon").await;
    let case = s
        .create_case(&desk, "F.K.", "gesundheit", &["ar"], &[&amira])
        .await;
    let other = s
        .create_case(&desk, "Z.Z.", "wohnen", &["ar"], &[&amira])
        .await;
    let (starts, ends) = window(3);
    let request = s
        .create_request(&desk, "behoerden", &["ar"], &starts, &ends)
        .await;
    let notes = ["Hausarzt gefunden", "Termin <b>beim</b> Amt & Jobcenter"];
    let mut phone = SyncClient::connect(s.addr, &phone_token, "phone").await;
    write(&mut phone, &s, case, &amira, &notes).await;
    write(&mut phone, &s, other, &amira, &["Wohnung besichtigt"]).await;

    // Another organisation reads its own things; none of it may show below.
    let (_, stranger) = s.new_org("Lotsen Anderswo").await;
    let olena = s.volunteer(&stranger, "Olena", &["uk"]).await;
    assert_eq!(
        s.get(&format!("/api/v1/volunteers/{olena}"), Some(&stranger))
            .await
            .0,
        200
    );

    // Reads of a request, a profile and a case, through the API and the dashboard.
    let case_id = case.to_string();
    for path in [
        format!("/api/v1/requests/{request}"),
        format!("/api/v1/volunteers/{amira}"),
        format!("/api/v1/cases/{case}"),
        format!("/api/v1/cases/{case}/export"),
        format!("/api/v1/volunteers/{amira}/export"),
    ] {
        let (status, body) = s.get(&path, Some(&desk)).await;
        assert_eq!(status, 200, "{path}: {body}");
    }
    for path in [
        format!("/dashboard/requests/{request}"),
        format!("/dashboard/volunteers/{amira}"),
        format!("/dashboard/cases/{case}"),
    ] {
        let (status, body) = page(&s, &desk, &path).await;
        assert_eq!(status, 200, "{path}: {body}");
    }

    // The printable case export: every note of the case (escaped), nothing of the other.
    let (status, export) = page(&s, &desk, &format!("/dashboard/cases/{case}/export")).await;
    assert_eq!(status, 200, "{export}");
    assert!(export.contains("Auskunft nach Art. 15 DSGVO"), "{export}");
    assert!(export.contains("Hausarzt gefunden"), "{export}");
    assert!(
        export.contains("Termin &lt;b&gt;beim&lt;/b&gt; Amt &amp; Jobcenter"),
        "{export}"
    );
    assert!(!export.contains("<b>beim</b>"), "escaped");
    assert!(
        !export.contains("Wohnung besichtigt"),
        "nothing of another case"
    );
    assert!(!export.contains("Z.Z."), "nothing of another case");
    assert_eq!(
        export.matches("<article class=\"note\"").count(),
        notes.len()
    );
    assert!(export.contains("Amira"), "who wrote the notes and hours");
    let (_, css) = page(&s, &desk, "/dashboard/static/app.css").await;
    assert!(css.contains("@media print"), "a print stylesheet");
    let (status, english) =
        page_in(&s, &desk, &format!("/dashboard/cases/{case}/export"), "en").await;
    assert_eq!(status, 200);
    assert!(english.contains("Access under Art. 15 GDPR"), "{english}");

    let (status, profile) = page(&s, &desk, &format!("/dashboard/volunteers/{amira}/export")).await;
    assert_eq!(status, 200, "{profile}");
    assert!(profile.contains("Auskunft nach Art. 15 DSGVO"));
    assert!(profile.contains("Amira") && profile.contains("Telefon"));
    assert!(
        profile.contains("F.K.") && profile.contains("Z.Z."),
        "the hours she wrote, with their cases"
    );

    // Another organisation, a missing record and a stranger's id: 404, no line.
    for (token, path) in [
        (&stranger, format!("/dashboard/cases/{case}/export")),
        (&stranger, format!("/dashboard/volunteers/{amira}/export")),
        (
            &desk,
            format!("/dashboard/cases/{}/export", DocumentId::random()),
        ),
        (
            &desk,
            "/dashboard/volunteers/4b0e6a52-2f7e-4c1c-9d39-3b8f2f2f0a11/export".to_owned(),
        ),
        (&desk, format!("/dashboard/volunteers/{olena}/export")),
        (&desk, "/dashboard/volunteers/kein-lotse/export".to_owned()),
    ] {
        assert_eq!(page(&s, token, &path).await.0, 404, "{path}");
    }
    let (status, _) = page(&s, "lts_nicht-angemeldet", "/dashboard/audit").await;
    assert!((300..400).contains(&status), "to the login: {status}");

    // The phone's lines come in batches, a little later: its sync and its change of
    // each case.
    let by_amira = format!("who=volunteer:{amira}&subject_kind=document");
    let synced = lotse_testkit::eventually("the phone's sync and change lines", WAIT, || async {
        let found = trail(&s, &desk, &by_amira).await;
        let done = [&case, &other].iter().all(|c| {
            let c = c.to_string();
            count(&found, "document.sync", &c) == 1 && count(&found, "document.change", &c) == 1
        });
        done.then_some(found)
    })
    .await;
    assert!(synced.iter().all(|l| l.actor == device), "{synced:?}");

    let all = trail(&s, &desk, "").await;
    assert!(all.len() < 100, "one page");
    assert_eq!(count(&all, "request.read", &request), 2, "API and page");
    assert_eq!(count(&all, "volunteer.read", &amira), 2, "API and page");
    assert_eq!(count(&all, "document.read", &case_id), 2, "API and page");
    assert_eq!(
        count(&all, "document.export", &case_id),
        3,
        "JSON and the page in two languages"
    );
    assert_eq!(count(&all, "volunteer.export", &amira), 2, "JSON and page");
    assert_eq!(
        count(&all, "document.sync", &case_id),
        1,
        "the phone's sync"
    );
    assert_eq!(count(&all, "document.create", &case_id), 1);
    // Its own reading is at the top (nothing newer happened since).
    assert_eq!(all[0].action, "audit.read");
    assert_eq!(
        (
            all[0].subject_kind.as_str(),
            all[0].subject.as_str(),
            all[0].actor.as_str()
        ),
        ("organisation", org.id.as_str(), me.as_str())
    );
    assert!(
        all.windows(2)
            .all(|w| (w[0].at, &w[0].id) > (w[1].at, &w[1].id)),
        "newest first"
    );
    // Nothing of the other organisation.
    assert!(all.iter().all(|l| l.subject != olena));
    let (_, body) = page(&s, &desk, "/dashboard/audit").await;
    assert!(!body.contains("Olena") && !body.contains("Lotsen Anderswo"));
    let theirs = trail(&s, &stranger, "").await;
    assert!(!theirs.is_empty());
    assert!(
        theirs.iter().all(|l| l.subject != case_id
            && l.subject != amira
            && l.subject != request
            && l.actor != me
            && l.actor != device),
        "{theirs:?}"
    );
    // Names and links instead of ids, labels instead of codes.
    for shown in [
        "Anfrage angesehen".to_owned(),
        "Profil angesehen".to_owned(),
        "Amira (Telefon)".to_owned(),
        format!("href=\"/dashboard/cases/{case}\""),
        format!("href=\"/dashboard/requests/{request}\""),
        format!("href=\"/dashboard/volunteers/{amira}\""),
    ] {
        assert!(body.contains(&shown), "{shown}");
    }

    // Who: a coordinator, a volunteer's devices, any actor's id.
    let mine = trail(&s, &desk, &format!("who=coordinator:{me}")).await;
    assert!(!mine.is_empty() && mine.iter().all(|l| l.actor == me));
    let hers = trail(&s, &desk, &format!("who=volunteer:{amira}")).await;
    assert!(!hers.is_empty() && hers.iter().all(|l| l.actor == device));
    assert!(hers.iter().any(|l| l.action == "device.enroll"), "{hers:?}");
    assert_eq!(trail(&s, &desk, &format!("actor={device}")).await, hers);
    // What: an action, a kind of record, one record.
    let requests = trail(&s, &desk, "action=request.read").await;
    assert_eq!(requests.len(), 2);
    assert!(requests.iter().all(|l| l.subject == request));
    let about = trail(
        &s,
        &desk,
        &format!("subject_kind=volunteer&subject_id={amira}"),
    )
    .await;
    assert!(
        about
            .iter()
            .all(|l| l.subject_kind == "volunteer" && l.subject == amira)
    );
    assert_eq!(count(&about, "volunteer.read", &amira), 2);
    let exports = trail(
        &s,
        &desk,
        &format!("action=document.export&subject_id={case}"),
    )
    .await;
    assert_eq!(exports.len(), 3, "{exports:?}");

    // When: local days. 23:30 UTC on 15 January is 00:30 on the 16th in Berlin.
    let late = 1_736_983_800_000;
    s.store
        .audit(&[AuditEntry {
            organisation_id: org.id.clone(),
            actor_kind: "coordinator",
            actor_id: me.clone(),
            action: "document.read",
            subject_kind: "document",
            subject_id: case_id.clone(),
            at: late,
        }])
        .await
        .unwrap();
    let day = trail(&s, &desk, "from=2025-01-16&to=2025-01-16").await;
    assert_eq!(day.len(), 1, "{day:?}");
    assert_eq!(day[0].at, late);
    assert!(
        trail(&s, &desk, "from=2025-01-15&to=2025-01-15")
            .await
            .is_empty()
    );
    assert!(trail(&s, &desk, "to=2025-01-15").await.is_empty());
    let since = trail(&s, &desk, "from=2025-01-17").await;
    assert!(!since.is_empty() && since.iter().all(|l| l.at > late));
    assert!(trail(&s, &desk, "from=2999-01-01").await.is_empty());
    let reads = trail(
        &s,
        &desk,
        &format!("action=document.read&subject_id={case}"),
    )
    .await;
    assert_eq!(reads.len(), 3);
    assert_eq!(reads[2].at, late, "the oldest last");

    // The CSV holds the same lines as the page, in the same order.
    for query in [
        format!("who=coordinator:{me}&subject_kind=document"),
        "subject_kind=request".to_owned(),
        format!("who=volunteer:{amira}"),
    ] {
        let shown = trail(&s, &desk, &query).await;
        let (status, body) = page(&s, &desk, &format!("/dashboard/audit.csv?{query}")).await;
        assert_eq!(status, 200, "{body}");
        let records = csv(&body);
        assert_eq!(records[0][0], "Zeit", "{body}");
        let ids: Vec<&str> = records[1..]
            .iter()
            .map(|r| r.last().unwrap().as_str())
            .collect();
        let expected: Vec<&str> = shown.iter().map(|l| l.id.as_str()).collect();
        assert_eq!(ids, expected, "{query}");
        for (r, l) in records[1..].iter().zip(&shown) {
            assert_eq!(
                (r[4].as_str(), r[6].as_str(), r[8].as_str()),
                (l.actor.as_str(), l.action.as_str(), l.subject.as_str())
            );
        }
    }
    let exported = trail(&s, &desk, "action=audit.export").await;
    assert_eq!(exported.len(), 3, "each download is in the trail");
    s.stop().await;
}

async fn the_trail_pages_newest_first_without_gaps(backend: Backend) {
    let s = TestServer::start(backend).await;
    let (org, me) = s.coordinator("Lotsen Protokoll", EMAIL, PASSWORD).await;
    let desk = s.login(EMAIL, PASSWORD).await;
    let (other, _) = s.new_org("Lotsen Anderswo").await;
    // Four lines share each millisecond, so pages end inside a millisecond too.
    let base = 1_767_225_600_000;
    let entry = |organisation_id: &str, i: i64| AuditEntry {
        organisation_id: organisation_id.to_owned(),
        actor_kind: "coordinator",
        actor_id: me.clone(),
        action: "document.read",
        subject_kind: "document",
        subject_id: format!("dokument-{i}"),
        at: base + i / 4,
    };
    let ours: Vec<AuditEntry> = (0..230).map(|i| entry(&org.id, i)).collect();
    let theirs: Vec<AuditEntry> = (0..50).map(|i| entry(&other, i)).collect();
    s.store.audit(&ours).await.unwrap();
    s.store.audit(&theirs).await.unwrap();

    let mut seen = Vec::new();
    let mut path = "/dashboard/audit?action=document.read".to_owned();
    let mut sizes = Vec::new();
    loop {
        let (status, body) = page(&s, &desk, &path).await;
        assert_eq!(status, 200, "{body}");
        let found = lines(&body);
        sizes.push(found.len());
        seen.extend(found);
        let Some(at) = body.find("rel=\"next\"") else {
            break;
        };
        let tag = &body[body[..at].rfind("<a").unwrap()..at];
        path = attr(tag, "href").replace("&amp;", "&");
        assert!(path.contains("action=document.read"), "{path}");
        assert!(sizes.len() < 5, "{sizes:?}");
    }
    assert_eq!(sizes, [100, 100, 30]);
    assert!(
        seen.windows(2)
            .all(|w| (w[0].at, &w[0].id) > (w[1].at, &w[1].id)),
        "newest first, no line twice"
    );
    let subjects: HashSet<&str> = seen.iter().map(|l| l.subject.as_str()).collect();
    assert_eq!(subjects.len(), 230, "every line once");
    assert_eq!(seen[0].at, base + 229 / 4);
    // Each page view is in the trail, as one reading of the organisation each.
    let readings = trail(&s, &desk, "action=audit.read").await;
    assert_eq!(readings.len(), 3 + 1);
    s.stop().await;
}

on_both_backends!(
    every_read_is_in_the_trail_and_the_filters_narrow_it,
    the_trail_pages_newest_first_without_gaps,
);

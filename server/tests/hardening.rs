//! The hardened sync surface (issue 14): authorship derived from the writing device's
//! actor, quotas refused per document with the socket kept open, and a flooding client
//! that cannot stall other peers. On SQLite and PostgreSQL.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use common::sync_client::SyncClient;
use lotse_protocol::automerge::transaction::Transactable;
use lotse_protocol::automerge::{ActorId, Automerge, ROOT, ReadDoc};
use lotse_protocol::{CaseDoc, DocumentId, Message, NewCase, NewHours, NewNote, Status, Topic};
use lotse_testkit::{Backend, TestServer, on_both_backends};
use rand::RngCore;

const QUIET: Duration = Duration::from_millis(400);

fn note(author: &str, text: &str) -> NewNote {
    NewNote {
        author: author.into(),
        text: text.into(),
    }
}

fn hours(author: &str) -> NewHours {
    NewHours {
        author: author.into(),
        date: "2026-11-30".into(),
        minutes: 90,
        travel_minutes: 20,
        kind: "begleitung".into(),
    }
}

/// Syncs `id` until the server goes quiet; returns the `lotse-refused` it sent, if any.
async fn sync_and_refusal(c: &mut SyncClient, id: DocumentId) -> Option<(String, u64)> {
    let others = c.sync_docs(&[id], QUIET).await;
    others.into_iter().find_map(|m| match m {
        Message::Refused {
            document_id,
            rule,
            limit,
            ..
        } if document_id == id => Some((rule, limit)),
        _ => None,
    })
}

/// Syncs `id` until the server has stored this client's heads (`None`) or refused the
/// document (the rule and limit), whichever comes first.
async fn stored_or_refused(
    s: &TestServer,
    c: &mut SyncClient,
    id: DocumentId,
) -> Option<(String, u64)> {
    c.offer(id).await;
    let mut ours = c.heads(&id);
    ours.sort();
    let until = Instant::now() + Duration::from_secs(60);
    loop {
        if stored_heads(s, &id).await == ours {
            return None;
        }
        assert!(Instant::now() < until, "neither stored nor refused");
        if let Ok(Some(m)) = c.recv_within(Duration::from_millis(100)).await {
            if let Message::Refused {
                document_id,
                rule,
                limit,
                ..
            } = &m
                && *document_id == id
            {
                return Some((rule.clone(), *limit));
            }
            c.handle(m).await;
        }
    }
}

/// Our clients speak the extension once they sent `lotse-catchup`.
async fn extended(c: &mut SyncClient) {
    let (verdict, _) = c.catch_up().await;
    assert!(matches!(
        verdict,
        Message::InSync { .. } | Message::Manifest { .. }
    ));
}

async fn stored_heads(
    s: &TestServer,
    id: &DocumentId,
) -> Vec<lotse_protocol::automerge::ChangeHash> {
    let mut heads = s.store.document(id).await.unwrap().unwrap().heads;
    heads.sort();
    heads
}

/// Two volunteers on one case, each with a device: the server, the coordinator's token,
/// the case, and (volunteer id, device token) for Amira and for Olena.
struct Pair {
    s: TestServer,
    coordinator: String,
    case: DocumentId,
    amira: (String, String),
    olena: (String, String),
}

async fn two_on_a_case(backend: Backend, org: &str) -> Pair {
    let s = TestServer::start(backend).await;
    let (_, coordinator) = s.new_org(org).await;
    let amira = s.volunteer(&coordinator, "Amira", &["ar"]).await;
    let olena = s.volunteer(&coordinator, "Olena", &["uk"]).await;
    let case = s
        .create_case(
            &coordinator,
            "F.K.",
            "gesundheit",
            &["ar"],
            &[&amira, &olena],
        )
        .await;
    let (_, amira_token) = s.device(&coordinator, &amira, "Amiras Telefon").await;
    let (_, olena_token) = s.device(&coordinator, &olena, "Olenas Telefon").await;
    Pair {
        s,
        coordinator,
        case,
        amira: (amira, amira_token),
        olena: (olena, olena_token),
    }
}

/// A device writes a note and hours naming another volunteer: the API and the case
/// page attribute them to the writing device's volunteer and flag the mismatch. Another
/// device that writes with the first device's actor is refused for that document.
async fn authorship_is_derived_from_the_writing_device(backend: Backend) {
    let Pair {
        s,
        coordinator,
        case,
        amira: (amira, amira_token),
        olena: (olena, olena_token),
    } = two_on_a_case(backend, "Lotsen Urheber").await;

    let mut phone = SyncClient::connect(s.addr, &amira_token, "amira-phone").await;
    extended(&mut phone).await;
    phone.fetch(case).await;
    let mut doc = phone
        .docs
        .remove(&case)
        .unwrap()
        .with_actor(ActorId::random());
    let actor = doc.get_actor().clone();
    CaseDoc::add_note(
        &mut doc,
        &note(&olena, "Termin im Bürgeramt vereinbart"),
        2_000,
    )
    .unwrap();
    CaseDoc::log_hours(&mut doc, &hours(&olena), 3_000).unwrap();
    phone.docs.insert(case, doc);
    assert_eq!(sync_and_refusal(&mut phone, case).await, None);
    phone.wait_until_stored(&s.store, case).await;

    let body = s.case(&coordinator, &case).await;
    for entry in [&body["notes"][0], &body["hours"][0]] {
        assert_eq!(entry["author"], amira.as_str(), "{entry}");
        assert_eq!(entry["authorVerified"], true, "{entry}");
        assert_eq!(entry["authorMismatch"], true, "{entry}");
        assert_eq!(entry["claimedAuthor"], olena.as_str(), "{entry}");
    }

    // The case page shows Amira as the writer and the claim as a warning.
    let html = dashboard_case_page(&s, "Lotsen Urheber", &case).await;
    let notes = &html[html.find("id=\"notizen\"").unwrap()..];
    let first_note = &notes[..notes.find("</article>").unwrap()];
    assert!(first_note.contains("Amira"), "{first_note}");
    assert!(first_note.contains("Eintrag nennt Olena"), "{first_note}");

    // Olena's phone borrows Amira's actor: refused for that document, socket open.
    let mut other = SyncClient::connect(s.addr, &olena_token, "olena-phone").await;
    extended(&mut other).await;
    other.fetch(case).await;
    let before = stored_heads(&s, &case).await;
    let mut forged = other.docs.remove(&case).unwrap().with_actor(actor);
    CaseDoc::add_note(&mut forged, &note(&amira, "gefälscht"), 4_000).unwrap();
    other.docs.insert(case, forged);
    let refusal = sync_and_refusal(&mut other, case).await;
    assert_eq!(refusal, Some(("foreign-actor".to_owned(), 0)));
    assert_eq!(
        stored_heads(&s, &case).await,
        before,
        "nothing of it stored"
    );
    // Still connected, and a document of its own still syncs.
    let own = DocumentId::random();
    let mut fresh = Automerge::new();
    CaseDoc::create(
        &mut fresh,
        &NewCase {
            organisation_id: "egal".into(),
            label: "O.".into(),
            languages: vec!["uk".into()],
            topic: Topic::Wohnen,
            status: Status::Active,
        },
        5_000,
    )
    .unwrap();
    other.offer_new_until_stored(&s.store, own, fresh).await;
    s.stop().await;
}

/// The case page as a coordinator's browser gets it (cookies kept by hand).
async fn dashboard_case_page(s: &TestServer, org: &str, case: &DocumentId) -> String {
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let mut cookies: Vec<String> = Vec::new();
    let mut keep = |res: &reqwest::Response| {
        for v in res.headers().get_all(reqwest::header::SET_COOKIE) {
            let pair = v.to_str().unwrap().split(';').next().unwrap().to_owned();
            cookies.push(pair);
        }
        cookies.join("; ")
    };
    let form = http.get(s.url("/dashboard/login")).send().await.unwrap();
    let jar = keep(&form);
    let page = form.text().await.unwrap();
    let csrf = page
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap()
        .to_owned();
    let email = format!(
        "koordination@{}.example",
        org.to_lowercase().replace(' ', "-")
    );
    let body: String = form_urlencoded::Serializer::new(String::new())
        .extend_pairs([
            ("csrf", csrf.as_str()),
            ("email", email.as_str()),
            ("password", lotse_testkit::PASSWORD),
        ])
        .finish();
    let answer = http
        .post(s.url("/dashboard/login"))
        .header(reqwest::header::COOKIE, jar)
        .header(
            reqwest::header::CONTENT_TYPE,
            "application/x-www-form-urlencoded",
        )
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 303);
    let jar = keep(&answer);
    let page = http
        .get(s.url(&format!("/dashboard/cases/{case}")))
        .header(reqwest::header::COOKIE, jar)
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    page.text().await.unwrap()
}

/// A document grown in steps of 1 MB is refused once past its quota, for that document
/// alone: nothing of the refused step is stored or reaches another peer, the socket stays
/// open, and the same device's other documents still sync.
async fn a_document_past_its_quota_is_refused_alone(backend: Backend) {
    let s = TestServer::start(backend).await;
    let (_, coordinator) = s.new_org("Lotsen Quote").await;
    let amira = s.volunteer(&coordinator, "Amira", &["ar"]).await;
    let (_, token) = s.device(&coordinator, &amira, "Amiras Telefon").await;
    let limit = s.state.hub.quotas().document_bytes;

    let mut phone = SyncClient::connect(s.addr, &token, "amira-phone").await;
    extended(&mut phone).await;
    let big = DocumentId::random();
    let mut doc = Automerge::new();
    doc.transact::<_, _, lotse_protocol::automerge::AutomergeError>(|tx| {
        tx.put(ROOT, "start", "x")?;
        Ok(())
    })
    .unwrap();
    phone.offer_new_until_stored(&s.store, big, doc).await;

    // The coordinator follows the document, to see what reaches another peer.
    let mut watcher = SyncClient::connect(s.addr, &coordinator, "dashboard-tab").await;
    watcher.fetch(big).await;

    let mut rng = rand::thread_rng();
    let mut refused = None;
    let mut accepted = stored_heads(&s, &big).await;
    for step in 0..(limit / 1_000_000 + 3) {
        let mut blob = vec![0u8; 1_000_000];
        rng.fill_bytes(&mut blob);
        let doc = phone.docs.get_mut(&big).unwrap();
        doc.transact::<_, _, lotse_protocol::automerge::AutomergeError>(|tx| {
            tx.put(ROOT, format!("blob-{step}"), blob)?;
            Ok(())
        })
        .unwrap();
        if let Some(r) = stored_or_refused(&s, &mut phone, big).await {
            refused = Some((step, r));
            break;
        }
        accepted = stored_heads(&s, &big).await;
    }
    let (step, (rule, said_limit)) = refused.expect("refused before the loop ran out");
    assert_eq!(rule, "document-bytes");
    assert_eq!(said_limit, limit);
    assert!(step >= 1, "the first megabyte is within the limit");
    assert_eq!(
        stored_heads(&s, &big).await,
        accepted,
        "nothing of it stored"
    );
    let stored: u64 = s
        .store
        .document_chunks(&big)
        .await
        .unwrap()
        .iter()
        .map(|c| c.len() as u64)
        .sum();
    assert!(stored <= limit, "{stored} bytes stored");

    // The watcher gets the accepted steps and nothing of the refused one.
    let want = accepted.clone();
    watcher
        .wait_for(big, Duration::from_secs(60), |d| {
            let mut heads = d.get_heads();
            heads.sort();
            heads == want
        })
        .await;
    watcher.drain(QUIET).await;
    let mut seen = watcher.heads(&big);
    seen.sort();
    assert_eq!(seen, accepted);

    // The socket is open and another document of the same device syncs.
    let small = DocumentId::random();
    let mut doc = Automerge::new();
    doc.transact::<_, _, lotse_protocol::automerge::AutomergeError>(|tx| {
        tx.put(ROOT, "klein", "ja")?;
        Ok(())
    })
    .unwrap();
    phone.offer_new_until_stored(&s.store, small, doc).await;
    s.stop().await;
}

/// One device floods ephemeral messages and large changes; another device's change still
/// reaches a third within a second (a generous bound: loopback takes milliseconds).
async fn a_flooding_device_does_not_stall_the_others(backend: Backend) {
    let Pair {
        s,
        coordinator,
        case,
        amira: (amira, amira_token),
        olena: (_, olena_token),
    } = two_on_a_case(backend, "Lotsen Flut").await;
    let mallory = s.volunteer(&coordinator, "Mallory", &["en"]).await;
    let (_, mallory_token) = s.device(&coordinator, &mallory, "M").await;

    let mut writer = SyncClient::connect(s.addr, &amira_token, "amira").await;
    writer.fetch(case).await;
    let mut reader = SyncClient::connect(s.addr, &olena_token, "olena").await;
    reader.fetch(case).await;

    // The flood: new documents of Mallory's own, ~2 MB each, and ephemeral messages,
    // as fast as the socket takes them, on its own task.
    let addr = s.addr;
    let sent = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let counted = sent.clone();
    let flood = tokio::spawn(async move {
        let mut m = SyncClient::connect(addr, &mallory_token, "mallory").await;
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let mut count = 0u64;
        loop {
            let id = DocumentId::random();
            let mut doc = Automerge::new();
            let mut blob = vec![0u8; 2_000_000];
            rng.fill_bytes(&mut blob);
            doc.transact::<_, _, lotse_protocol::automerge::AutomergeError>(|tx| {
                tx.put(ROOT, "blob", blob)?;
                Ok(())
            })
            .unwrap();
            m.docs.insert(id, doc);
            m.offer(id).await;
            for _ in 0..200 {
                count += 1;
                let message = Message::Ephemeral {
                    sender_id: "mallory".into(),
                    target_id: m.server_id.clone(),
                    document_id: id,
                    session_id: "s".into(),
                    count,
                    data: vec![0xa0; 60_000],
                };
                if !m.try_send(message).await {
                    return;
                }
                counted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            // Answer whatever came back, without waiting for quiet.
            while let Ok(Some(msg)) = m.recv_within(Duration::from_millis(1)).await {
                m.handle(msg).await;
            }
        }
    });
    // Measure only once the flood is under way.
    lotse_testkit::eventually("the flood to start", Duration::from_secs(20), || async {
        sent.load(std::sync::atomic::Ordering::Relaxed) >= 400
    })
    .await;

    for round in 0..3 {
        let mut doc = writer.docs.remove(&case).unwrap();
        CaseDoc::add_note(&mut doc, &note(&amira, &format!("Runde {round}")), 10_000).unwrap();
        let want = doc.get_heads();
        writer.docs.insert(case, doc);
        let started = Instant::now();
        writer.offer(case).await;
        let writer_answers = async {
            // The writer answers the server so the change travels.
            loop {
                if let Ok(Some(m)) = writer.recv_within(Duration::from_millis(20)).await {
                    writer.handle(m).await;
                }
            }
        };
        let arrived = async {
            reader
                .wait_for(case, Duration::from_secs(5), |d| {
                    want.iter().all(|h| d.get_change_by_hash(h).is_some())
                })
                .await;
        };
        tokio::select! {
            () = arrived => {}
            _ = writer_answers => {}
        }
        let took = started.elapsed();
        assert!(took < Duration::from_secs(1), "round {round}: {took:?}");
    }
    assert!(!flood.is_finished(), "the flood ran throughout");
    flood.abort();
    s.stop().await;
}

use rand::SeedableRng;

on_both_backends!(
    authorship_is_derived_from_the_writing_device,
    a_document_past_its_quota_is_refused_alone,
    a_flooding_device_does_not_stall_the_others,
);

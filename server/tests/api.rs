//! The REST API over real HTTP: login, volunteers, enrollment, devices, isolation, and
//! the answers to bad input. Every test runs on SQLite and on PostgreSQL.
#![allow(clippy::unwrap_used)]

use lotse_server::auth;
use lotse_testkit::{Backend, TestServer, on_both_backends};
use reqwest::Method;
use serde_json::json;

const PW: &str = "Sonnenblume am Rhein 7";

/// A login as a browser sends it, for the headers of the answer.
async fn login_response(s: &TestServer, email: &str, password: &str) -> reqwest::Response {
    s.http
        .post(s.url("/api/v1/auth/login"))
        .json(&json!({"email": email, "password": password}))
        .send()
        .await
        .unwrap()
}

async fn login_ok_wrong_password_and_logout(backend: Backend) {
    let s = TestServer::start(backend).await;
    let (org, coordinator_id) = s
        .coordinator("Lotsen Neuss", "Dana@Neuss.example", PW)
        .await;

    let res = login_response(&s, "dana@neuss.example", PW).await;
    assert_eq!(res.status(), 200);
    let cookie = res.headers()["set-cookie"].to_str().unwrap().to_owned();
    for part in [
        "lotse_session=lts_",
        "HttpOnly",
        "SameSite=Strict",
        "Secure",
    ] {
        assert!(cookie.contains(part), "{cookie}");
    }
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(body["coordinator_id"], coordinator_id.as_str());
    assert_eq!(body["organisation_id"], org.id.as_str());
    let token = body["token"].as_str().unwrap().to_owned();

    let (status, me) = s.get("/api/v1/me", Some(&token)).await;
    assert_eq!(status, 200);
    assert_eq!(me["kind"], "coordinator");
    assert_eq!(me["email"], "dana@neuss.example");

    // The cookie alone authenticates too.
    let session = cookie.split(';').next().unwrap();
    let res = s
        .http
        .get(s.url("/api/v1/me"))
        .header("cookie", session)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);

    for (email, password, what) in [
        ("dana@neuss.example", "falsch", "a wrong password"),
        (
            "niemand@neuss.example",
            PW,
            "an unknown email looks like a wrong password",
        ),
    ] {
        let (status, body) = s.try_login(email, password).await;
        assert_eq!(status, 401, "{what}");
        assert_eq!(body["error"]["code"], "invalid_credentials", "{what}");
    }

    let (status, _) = s
        .request(Method::POST, "/api/v1/auth/logout", Some(&token), None)
        .await;
    assert_eq!(status, 204);
    let (status, body) = s.get("/api/v1/me", Some(&token)).await;
    assert_eq!(status, 401);
    assert_eq!(body["error"]["code"], "unauthorized");

    // Logout everywhere ends every session of the coordinator.
    let t1 = s.login("dana@neuss.example", PW).await;
    let t2 = s.login("dana@neuss.example", PW).await;
    let (status, body) = s
        .request(Method::POST, "/api/v1/auth/logout-all", Some(&t1), None)
        .await;
    assert_eq!(status, 200);
    assert_eq!(body["sessions_ended"], 2);
    assert_eq!(s.get("/api/v1/me", Some(&t2)).await.0, 401);
    s.stop().await;
}

async fn login_rate_limit_per_account_and_address(backend: Backend) {
    let s = TestServer::start(backend).await;
    s.coordinator("Lotsen Neuss", "a@neuss.example", PW).await;
    for i in 0..5 {
        let (status, _) = s.try_login("a@neuss.example", &format!("rate {i}")).await;
        assert_eq!(status, 401, "attempt {i} is still free");
    }
    let (status, _) = s.try_login("a@neuss.example", "noch einer").await;
    assert_eq!(
        status, 401,
        "the sixth failure is counted and starts the wait"
    );
    let res = login_response(&s, "A@neuss.example", PW).await;
    assert_eq!(
        res.status(),
        429,
        "even the right password waits while the account is blocked"
    );
    let retry: u64 = res.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=30).contains(&retry), "{retry}");
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(body["error"]["code"], "too_many_attempts");

    // Another account from the same address is still allowed until the address budget
    // (20 failures) is spent; then every account from that address waits.
    s.coordinator("Lotsen Neuss", "b@neuss.example", PW).await;
    assert_eq!(s.try_login("b@neuss.example", PW).await.0, 200);
    for i in 0..15 {
        let email = format!("probe{i}@neuss.example");
        let (status, _) = s.try_login(&email, "x").await;
        assert_eq!(status, 401, "probe {i}");
    }
    let (status, _) = s.try_login("b@neuss.example", PW).await;
    assert_eq!(status, 429, "the address is blocked after 21 failures");
    s.stop().await;
}

async fn volunteer_crud(backend: Backend) {
    let s = TestServer::start(backend).await;
    let (org, token) = s.new_org("Lotsen Osnabrueck").await;
    let (status, v) = s
        .post(
            "/api/v1/volunteers",
            Some(&token),
            json!({
                "display_name": "  Amira H. ",
                "languages": ["AR", "de", "ar"],
                "topics": ["gesundheit", "Behoerden"],
                "availability": [{"weekday": 2, "from": "14:00", "to": "18:00"}],
                "pledge_signed_on": "2025-09-12",
                "trainings": [{"name": "Supervision", "completed_on": "2026-02-05"},
                              {"name": "Basislehrgang", "completed_on": "2025-09-12"}]
            }),
        )
        .await;
    assert_eq!(status, 201, "{v}");
    assert_eq!(v["display_name"], "Amira H.");
    assert_eq!(
        v["trainings"],
        json!([{"name": "Basislehrgang", "completed_on": "2025-09-12"},
               {"name": "Supervision", "completed_on": "2026-02-05"}])
    );
    assert_eq!(v["languages"], json!(["ar", "de"]));
    assert_eq!(v["topics"], json!(["gesundheit", "behoerden"]));
    assert_eq!(v["active"], true);
    assert_eq!(v["organisation_id"], org.as_str());
    let id = v["id"].as_str().unwrap();

    let (status, got) = s
        .get(&format!("/api/v1/volunteers/{id}"), Some(&token))
        .await;
    assert_eq!(status, 200);
    assert_eq!(got, v);

    let (status, patched) = s
        .patch(
            &format!("/api/v1/volunteers/{id}"),
            Some(&token),
            json!({"languages": ["ar", "de", "fr"], "active": false, "pledge_signed_on": null}),
        )
        .await;
    assert_eq!(status, 200, "{patched}");
    assert_eq!(patched["languages"], json!(["ar", "de", "fr"]));
    assert_eq!(patched["active"], false);
    assert_eq!(patched["pledge_signed_on"], json!(null));
    assert_eq!(patched["display_name"], "Amira H.", "fields left out stay");

    s.volunteer(&token, "Olena K.", &["uk"]).await;
    let (status, list) = s.get("/api/v1/volunteers", Some(&token)).await;
    assert_eq!(status, 200);
    let names: Vec<_> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["display_name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["Amira H.", "Olena K."]);

    let missing = uuid::Uuid::new_v4();
    assert_eq!(
        s.get(&format!("/api/v1/volunteers/{missing}"), Some(&token))
            .await
            .0,
        404
    );
    assert_eq!(
        s.patch(
            &format!("/api/v1/volunteers/{missing}"),
            Some(&token),
            json!({})
        )
        .await
        .0,
        404
    );

    let events = s.store.audit_events(&org, 10).await.unwrap();
    let actions: Vec<_> = events.iter().map(|e| e.action.as_str()).collect();
    assert!(
        actions.contains(&"volunteer.create") && actions.contains(&"volunteer.update"),
        "{actions:?}"
    );
    s.stop().await;
}

async fn bad_input_gets_clear_4xx(backend: Backend) {
    let s = TestServer::start(backend).await;
    let (_, token) = s.new_org("Lotsen Guenzburg").await;
    let cases = [
        (
            json!({"display_name": "", "languages": ["de"]}),
            422,
            "display_name",
        ),
        (
            json!({"display_name": "X", "languages": []}),
            422,
            "languages",
        ),
        (
            json!({"display_name": "X", "languages": ["xx"]}),
            422,
            "languages",
        ),
        (
            json!({"display_name": "X", "languages": ["de"], "topics": ["kochen"]}),
            422,
            "topics",
        ),
        (
            json!({"display_name": "X", "languages": ["de"], "availability": [{"weekday": 8, "from": "10:00", "to": "11:00"}]}),
            422,
            "availability",
        ),
        (
            json!({"display_name": "X", "languages": ["de"], "availability": [{"weekday": 1, "from": "12:00", "to": "11:00"}]}),
            422,
            "availability",
        ),
        (
            json!({"display_name": "X", "languages": ["de"], "availability": [{"weekday": 1, "from": "25:00", "to": "26:00"}]}),
            422,
            "availability",
        ),
        (
            json!({"display_name": "X", "languages": ["de"], "pledge_signed_on": "12.09.2025"}),
            422,
            "pledge_signed_on",
        ),
        (
            json!({"display_name": "X", "languages": ["de"], "trainings": [{"name": "Basislehrgang", "completed_on": "März 2025"}]}),
            422,
            "trainings",
        ),
        (
            json!({"display_name": "X", "languages": ["de"], "trainings": [{"name": " ", "completed_on": "2025-03-04"}]}),
            422,
            "trainings",
        ),
    ];
    for (body, status, field) in cases {
        let (got, answer) = s
            .post("/api/v1/volunteers", Some(&token), body.clone())
            .await;
        assert_eq!(got, status, "{body} -> {answer}");
        assert_eq!(answer["error"]["code"], "invalid_field");
        assert_eq!(answer["error"]["field"], field, "{answer}");
    }

    // Unknown fields, wrong types, missing fields.
    for body in [
        json!({"display_name": "X", "languages": ["de"], "admin": true}),
        json!({"display_name": 5, "languages": ["de"]}),
        json!({"languages": ["de"]}),
    ] {
        let (status, answer) = s
            .post("/api/v1/volunteers", Some(&token), body.clone())
            .await;
        assert_eq!(status, 400, "{body}");
        assert_eq!(answer["error"]["code"], "invalid_body");
    }

    let raw = |body: &'static str, content_type: &'static str| {
        s.http
            .post(s.url("/api/v1/volunteers"))
            .bearer_auth(&token)
            .header("content-type", content_type)
            .body(body)
    };
    let res = raw("{\"display_name\": ", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    let answer: serde_json::Value = res.json().await.unwrap();
    assert_eq!(answer["error"]["code"], "invalid_json");
    let res = raw("display_name=x", "application/x-www-form-urlencoded")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 415);

    let huge = format!(
        "{{\"display_name\": \"{}\", \"languages\": [\"de\"]}}",
        "x".repeat(100_000)
    );
    let res = s
        .http
        .post(s.url("/api/v1/volunteers"))
        .bearer_auth(&token)
        .header("content-type", "application/json")
        .body(huge)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 413);
    let answer: serde_json::Value = res.json().await.unwrap();
    assert_eq!(answer["error"]["code"], "payload_too_large");

    let (status, answer) = s.get("/api/v1/volunteers/not-a-uuid", Some(&token)).await;
    assert_eq!(status, 400);
    assert_eq!(answer["error"]["code"], "invalid_id");

    let (status, answer) = s.get("/api/v1/nothing-here", Some(&token)).await;
    assert_eq!(status, 404);
    assert_eq!(answer["error"]["code"], "not_found");

    // No token, a garbage token, and a device on a coordinator endpoint.
    assert_eq!(s.get("/api/v1/volunteers", None).await.0, 401);
    assert_eq!(
        s.get("/api/v1/volunteers", Some("lts_garbage")).await.0,
        401
    );
    let res = s
        .http
        .get(s.url("/api/v1/me"))
        .header("authorization", "Basic Zm9vOmJhcg==")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    let vid = s.volunteer(&token, "Sami Y.", &["ar"]).await;
    let (_, device_token) = s.device(&token, &vid, "Pixel").await;
    let (status, answer) = s.get("/api/v1/volunteers", Some(&device_token)).await;
    assert_eq!(status, 403);
    assert_eq!(answer["error"]["code"], "forbidden");

    let (status, answer) = s
        .request(
            Method::POST,
            &format!("/api/v1/volunteers/{vid}/enrollment-codes?valid_hours=500"),
            Some(&token),
            None,
        )
        .await;
    assert_eq!(status, 422);
    assert_eq!(answer["error"]["field"], "valid_hours");
    s.stop().await;
}

async fn enrollment_codes_are_single_use_and_expire(backend: Backend) {
    let s = TestServer::start(backend).await;
    let (org, token) = s.new_org("Lotsen Neuss").await;
    let vid = s.volunteer(&token, "Farid R.", &["fa", "de"]).await;

    let (status, code) = s
        .request(
            Method::POST,
            &format!("/api/v1/volunteers/{vid}/enrollment-codes"),
            Some(&token),
            None,
        )
        .await;
    assert_eq!(status, 201);
    let code = code["code"].as_str().unwrap().to_owned();
    assert_eq!(code.len(), 11, "short enough to type: {code}");

    // Typed sloppily: lower case, without the dash.
    let sloppy = code.to_lowercase().replace('-', "");
    let (status, enrolled) = s.enroll(&sloppy, "Farids Handy").await;
    assert_eq!(status, 201, "{enrolled}");
    assert_eq!(enrolled["volunteer_id"], vid.as_str());
    let device_token = enrolled["token"].as_str().unwrap();
    assert!(device_token.starts_with("ltd_"));

    let (status, me) = s.get("/api/v1/me", Some(device_token)).await;
    assert_eq!(status, 200);
    assert_eq!(me["kind"], "device");
    assert_eq!(me["volunteer_id"], vid.as_str());
    assert_eq!(me["organisation_id"], org.as_str());
    assert_eq!(me["device_name"], "Farids Handy");

    let (status, again) = s.enroll(&code, "Zweites Handy").await;
    assert_eq!(status, 410);
    assert_eq!(again["error"]["code"], "gone");
    assert!(
        again["error"]["message"]
            .as_str()
            .unwrap()
            .contains("already used")
    );

    // An expired code, written straight to the store.
    let expired = auth::new_enrollment_code();
    let coordinator = s
        .store
        .coordinator_by_email("koordination@lotsen-neuss.example")
        .await
        .unwrap()
        .unwrap();
    s.store
        .create_enrollment_code(
            &org,
            &coordinator.id,
            &vid,
            &auth::code_hash(&expired).unwrap(),
            1,
        )
        .await
        .unwrap()
        .unwrap();
    let (status, answer) = s.enroll(&expired, "Alt").await;
    assert_eq!(status, 410);
    assert!(
        answer["error"]["message"]
            .as_str()
            .unwrap()
            .contains("expired")
    );

    // A code nobody issued, a code of the wrong form, and no device name.
    for (code, device_name, status, error) in [
        ("AAAAA-BBBBB", "X", 400, "invalid_code"),
        ("hallo", "X", 400, "invalid_code"),
        ("AAAAA-BBBBB", "", 422, "invalid_field"),
    ] {
        let (got, answer) = s.enroll(code, device_name).await;
        assert_eq!(got, status, "{code:?} {device_name:?}: {answer}");
        assert_eq!(answer["error"]["code"], error, "{answer}");
    }

    let (status, devices) = s
        .get(&format!("/api/v1/volunteers/{vid}/devices"), Some(&token))
        .await;
    assert_eq!(status, 200);
    assert_eq!(devices.as_array().unwrap().len(), 1);
    assert_eq!(devices[0]["name"], "Farids Handy");
    assert_eq!(devices[0]["revoked_at"], json!(null));
    s.stop().await;
}

async fn enrollment_attempts_are_rate_limited(backend: Backend) {
    let s = TestServer::start(backend).await;
    for i in 0..11 {
        let (status, _) = s.enroll("AAAAA-BBBBB", &format!("Rater {i}")).await;
        assert_eq!(status, 400, "attempt {i}");
    }
    let (status, answer) = s.enroll("AAAAA-BBBBB", "Rater").await;
    assert_eq!(status, 429);
    assert_eq!(answer["error"]["code"], "too_many_attempts");
    s.stop().await;
}

async fn revoked_device_is_locked_out_at_once(backend: Backend) {
    let s = TestServer::start(backend).await;
    let (_, token) = s.new_org("Lotsen Neuss").await;
    let vid = s.volunteer(&token, "Tigist B.", &["ti", "de"]).await;
    let (lost, lost_token) = s.device(&token, &vid, "verlorenes Handy").await;
    let (_, kept_token) = s.device(&token, &vid, "neues Handy").await;
    assert_eq!(s.get("/api/v1/me", Some(&lost_token)).await.0, 200);

    let (status, device) = s.revoke_device(&token, &lost).await;
    assert_eq!(status, 200);
    let revoked_at = device["revoked_at"].as_str().unwrap().to_owned();

    let (status, answer) = s.get("/api/v1/me", Some(&lost_token)).await;
    assert_eq!(status, 401);
    assert_eq!(
        answer["error"]["code"], "device_revoked",
        "the phone learns to wipe itself"
    );
    assert_eq!(
        s.get("/api/v1/me", Some(&kept_token)).await.0,
        200,
        "other devices keep working"
    );

    let (status, device) = s.revoke_device(&token, &lost).await;
    assert_eq!(status, 200);
    assert_eq!(
        device["revoked_at"],
        revoked_at.as_str(),
        "revoking twice keeps the first time"
    );
    let missing = uuid::Uuid::new_v4();
    assert_eq!(s.revoke_device(&token, &missing.to_string()).await.0, 404);
    s.stop().await;
}

async fn organisations_are_isolated_both_ways(backend: Backend) {
    let s = TestServer::start(backend).await;
    let (_, token_a) = s.new_org("Lotsen A").await;
    let (_, token_b) = s.new_org("Lotsen B").await;
    let va = s.volunteer(&token_a, "Volunteer A", &["de"]).await;
    let vb = s.volunteer(&token_b, "Volunteer B", &["de"]).await;
    let (da, _) = s.device(&token_a, &va, "A-Handy").await;
    let (db, _) = s.device(&token_b, &vb, "B-Handy").await;

    for (token, own, other_v, other_d) in [(&token_a, &va, &vb, &db), (&token_b, &vb, &va, &da)] {
        let (_, list) = s.get("/api/v1/volunteers", Some(token)).await;
        let ids: Vec<_> = list
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v["id"].as_str().unwrap())
            .collect();
        assert_eq!(ids, [own.as_str()]);
        for (status, answer) in [
            s.get(&format!("/api/v1/volunteers/{other_v}"), Some(token))
                .await,
            s.patch(
                &format!("/api/v1/volunteers/{other_v}"),
                Some(token),
                json!({"active": false}),
            )
            .await,
            s.get(
                &format!("/api/v1/volunteers/{other_v}/devices"),
                Some(token),
            )
            .await,
            s.request(
                Method::POST,
                &format!("/api/v1/volunteers/{other_v}/enrollment-codes"),
                Some(token),
                None,
            )
            .await,
            s.revoke_device(token, other_d).await,
        ] {
            assert_eq!(status, 404, "{answer}");
            assert_eq!(answer["error"]["code"], "not_found");
        }
    }
    // Nothing of B was changed by A's attempts.
    let (_, vb_now) = s
        .get(&format!("/api/v1/volunteers/{vb}"), Some(&token_b))
        .await;
    assert_eq!(vb_now["active"], true);
    let (_, devices) = s
        .get(&format!("/api/v1/volunteers/{vb}/devices"), Some(&token_b))
        .await;
    assert_eq!(devices[0]["revoked_at"], json!(null));
    s.stop().await;
}

async fn health_and_openapi(backend: Backend) {
    let s = TestServer::start(backend).await;
    assert_eq!(
        s.get("/healthz", None).await,
        (200, json!({"status": "ok"}))
    );
    assert_eq!(s.get("/readyz", None).await.0, 200);
    let (status, doc) = s.get("/openapi.json", None).await;
    assert_eq!(status, 200);
    for path in [
        "/api/v1/auth/login",
        "/api/v1/auth/logout",
        "/api/v1/me",
        "/api/v1/volunteers",
        "/api/v1/volunteers/{id}",
        "/api/v1/volunteers/{id}/enrollment-codes",
        "/api/v1/devices/enroll",
        "/api/v1/volunteers/{id}/devices",
        "/api/v1/devices/{id}/revoke",
    ] {
        assert!(
            doc["paths"][path].is_object(),
            "{path} missing from openapi.json"
        );
    }
    assert!(doc["paths"]["/api/v1/volunteers/{id}"]["patch"].is_object());
    // When the database goes away, readiness says so (and liveness does not).
    s.store.close().await;
    let (status, body) = s.get("/readyz", None).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(s.get("/healthz", None).await.0, 200);
}

on_both_backends!(
    login_ok_wrong_password_and_logout,
    login_rate_limit_per_account_and_address,
    volunteer_crud,
    bad_input_gets_clear_4xx,
    enrollment_codes_are_single_use_and_expire,
    enrollment_attempts_are_rate_limited,
    revoked_device_is_locked_out_at_once,
    organisations_are_isolated_both_ways,
    health_and_openapi,
);

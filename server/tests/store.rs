//! The store's own contract, run against SQLite and PostgreSQL alike.
#![allow(clippy::unwrap_used)]

use lotse_server::auth;
use lotse_server::store::{
    AccessChange, EnrollmentError, NewCoordinator, NewVolunteer, Slot, Store, StoreError, Training,
    VolunteerPatch,
};
use lotse_testkit::{Backend, TestDb, on_both_backends};

async fn fresh(backend: Backend) -> (TestDb, Store) {
    let db = TestDb::new(backend).await;
    let store = Store::connect(&db.url).await.unwrap();
    store.migrate().await.unwrap();
    // Migrating twice is a no-op.
    store.migrate().await.unwrap();
    (db, store)
}

fn volunteer(name: &str) -> NewVolunteer {
    NewVolunteer {
        display_name: name.into(),
        languages: vec!["ar".into(), "de".into()],
        topics: vec!["wohnen".into()],
        availability: vec![Slot {
            weekday: 3,
            from: "09:00".into(),
            to: "12:30".into(),
        }],
        active: true,
        pledge_signed_on: Some("2025-01-31".into()),
        trainings: vec![Training {
            name: "Basislehrgang".into(),
            completed_on: "2025-01-31".into(),
        }],
    }
}

async fn organisations_and_coordinators(backend: Backend) {
    let (_db, store) = fresh(backend).await;
    assert!(store.is_empty().await.unwrap());
    let a = store
        .ensure_organisation("Integrationslotsen Günzburg")
        .await
        .unwrap();
    let again = store
        .ensure_organisation("Integrationslotsen Günzburg")
        .await
        .unwrap();
    assert_eq!(a.id, again.id);
    assert_eq!(a.slug, "integrationslotsen-guenzburg");
    let b = store
        .ensure_organisation("Integrationslotsen  Günzburg")
        .await
        .unwrap();
    assert_ne!(a.slug, b.slug, "slugs stay unique");
    assert!(!store.is_empty().await.unwrap());

    let new = |email: &'static str| NewCoordinator {
        organisation_id: &a.id,
        email,
        display_name: "K",
        password_hash: "x",
        role: lotse_server::store::Role::Leitung,
    };
    let c = store
        .create_coordinator(new("Koord@Example.org"))
        .await
        .unwrap();
    assert_eq!(c.email, "koord@example.org");
    let dup = store.create_coordinator(new("koord@example.ORG")).await;
    assert!(matches!(dup, Err(StoreError::Conflict(_))), "{dup:?}");
    let found = store
        .coordinator_by_email(" KOORD@example.org ")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(found.id, c.id);

    store.create_session(&c, "live", i64::MAX).await.unwrap();
    store.create_session(&c, "stale", 1).await.unwrap();
    assert_eq!(
        store
            .coordinator_by_session("live")
            .await
            .unwrap()
            .unwrap()
            .id,
        c.id
    );
    assert!(
        store
            .coordinator_by_session("stale")
            .await
            .unwrap()
            .is_none(),
        "expired sessions do not count"
    );
    store.delete_session("live").await.unwrap();
    assert!(
        store
            .coordinator_by_session("live")
            .await
            .unwrap()
            .is_none()
    );
}

async fn volunteers_are_scoped_by_organisation(backend: Backend) {
    let (_db, store) = fresh(backend).await;
    let a = store.ensure_organisation("A").await.unwrap();
    let b = store.ensure_organisation("B").await.unwrap();
    let v = store
        .create_volunteer(&a.id, "c", volunteer("Olena"))
        .await
        .unwrap();
    assert_eq!(store.volunteers(&a.id).await.unwrap().len(), 1);
    assert!(store.volunteers(&b.id).await.unwrap().is_empty());
    assert!(store.volunteer(&b.id, &v.id).await.unwrap().is_none());
    let read = store.volunteer(&a.id, &v.id).await.unwrap().unwrap();
    assert_eq!(read.availability, v.availability);
    assert_eq!(read.pledge_signed_on.as_deref(), Some("2025-01-31"));
    assert_eq!(read.trainings, v.trainings);
    assert_eq!(read.trainings.len(), 1);

    let patch = || VolunteerPatch {
        active: Some(false),
        ..Default::default()
    };
    assert!(
        store
            .update_volunteer(&b.id, "c", &v.id, patch())
            .await
            .unwrap()
            .is_none()
    );
    assert!(store.volunteer(&a.id, &v.id).await.unwrap().unwrap().active);
    let (updated, revoked) = store
        .update_volunteer(&a.id, "c", &v.id, patch())
        .await
        .unwrap()
        .unwrap();
    assert!(!updated.active);
    assert!(revoked.is_empty(), "no devices to revoke: {revoked:?}");
    assert!(updated.updated_at >= v.updated_at);
    let events = store.audit_events(&a.id, 10).await.unwrap();
    assert_eq!(events.len(), 2);
    assert!(store.audit_events(&b.id, 10).await.unwrap().is_empty());
}

async fn enrollment_is_atomic(backend: Backend) {
    let (_db, store) = fresh(backend).await;
    let org = store.ensure_organisation("A").await.unwrap();
    let c = store
        .create_coordinator(NewCoordinator {
            organisation_id: &org.id,
            email: "k@a.example",
            display_name: "K",
            password_hash: "x",
            role: lotse_server::store::Role::Leitung,
        })
        .await
        .unwrap();
    let v = store
        .create_volunteer(&org.id, &c.id, volunteer("Sami"))
        .await
        .unwrap();
    let code = auth::new_enrollment_code();
    let hash = auth::code_hash(&code).unwrap();
    store
        .create_enrollment_code(&org.id, &c.id, &v.id, &hash, i64::MAX)
        .await
        .unwrap()
        .unwrap();

    // Eight phones race with the same code: exactly one gets a device.
    let mut tasks = Vec::new();
    for i in 0..8 {
        let store = store.clone();
        let hash = hash.clone();
        tasks.push(tokio::spawn(async move {
            store
                .enroll_device(&hash, &format!("Handy {i}"), &format!("token-{i}"))
                .await
        }));
    }
    let mut won = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(_) => won += 1,
            Err(EnrollmentError::Used) => {}
            Err(e) => panic!("unexpected: {e:?}"),
        }
    }
    assert_eq!(won, 1);
    let devices = store.devices_of(&org.id, &v.id).await.unwrap().unwrap();
    assert_eq!(devices.len(), 1);
    let winner = store
        .device_by_token(&format!("token-{}", &devices[0].name[6..]))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(winner.device.id, devices[0].id);
    assert_eq!(winner.organisation_id, org.id);

    // Inactive volunteers cannot enroll new phones.
    store
        .update_volunteer(
            &org.id,
            &c.id,
            &v.id,
            VolunteerPatch {
                active: Some(false),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let other = auth::code_hash(&auth::new_enrollment_code()).unwrap();
    store
        .create_enrollment_code(&org.id, &c.id, &v.id, &other, i64::MAX)
        .await
        .unwrap()
        .unwrap();
    assert!(matches!(
        store.enroll_device(&other, "x", "t").await,
        Err(EnrollmentError::Inactive)
    ));
    assert!(matches!(
        store.enroll_device("nope", "x", "t2").await,
        Err(EnrollmentError::Unknown)
    ));

    // Revocation is scoped and keeps its first time.
    let b = store.ensure_organisation("B").await.unwrap();
    assert!(
        store
            .revoke_device(&b.id, "k", &devices[0].id)
            .await
            .unwrap()
            .is_none()
    );
    let (first, shrunk) = store
        .revoke_device(&org.id, &c.id, &devices[0].id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        shrunk,
        [AccessChange::DeviceRevoked {
            device_id: first.id.clone()
        }]
    );
    let (second, _) = store
        .revoke_device(&org.id, &c.id, &devices[0].id)
        .await
        .unwrap()
        .unwrap();
    assert!(first.revoked_at.is_some());
    assert_eq!(first.revoked_at, second.revoked_at);
}

on_both_backends!(
    organisations_and_coordinators,
    volunteers_are_scoped_by_organisation,
    enrollment_is_atomic
);

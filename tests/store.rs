//! The device registry behaves the same on both dialects: SQLite (the embedded default) and
//! PostgreSQL (a fresh database for the test), also when registrations race each other; so
//! does the store's writer (inbox rows and push queue sends), which takes a different road on
//! a SQLite file (a thread with its own connection) than on PostgreSQL or an in-memory SQLite
//! database (sqlx's pool).

mod common;

use common::services::TestDb;
use switchboard::ids::AppId;
use switchboard::store::{
    Applied, Change, Finished, InboxRow, NewRow, NewRows, Platform, ProviderKind, Registration,
    Store, StoreError, Write, Written, LAZY_WRITE_DELAY,
};

fn fcm(token: impl Into<String>, platform: Platform) -> Registration {
    Registration {
        provider: ProviderKind::Fcm,
        token: token.into(),
        platform,
        app: None,
    }
}

fn apns(token: &str, app: &str) -> Registration {
    Registration {
        provider: ProviderKind::Apns,
        token: token.into(),
        platform: Platform::Ios,
        app: Some(AppId::try_from(app).unwrap()),
    }
}

/// A device keeps its provider and app; a token the provider called gone at some time is
/// deleted only where it was registered before then, and only for that provider.
async fn providers_apps_and_gone_tokens(s: &Store) {
    let hex = "ab".repeat(32);
    let ios = s
        .upsert_device("u4", "ios", &apns(&hex, "shop"))
        .await
        .unwrap();
    s.upsert_device("u4", "droid", &fcm(hex.clone(), Platform::Android))
        .await
        .unwrap();
    let list = s.devices_for_user("u4").await.unwrap();
    assert_eq!(list.len(), 2, "one token, two providers: two devices");
    let stored = list.iter().find(|d| d.device_id == "ios").unwrap();
    assert_eq!(stored, &ios);
    assert_eq!(stored.provider, ProviderKind::Apns);
    assert_eq!(stored.app.as_deref(), Some("shop"));

    let before = ios.updated_at - 1;
    assert_eq!(
        s.delete_token(ProviderKind::Apns, &hex, Some(before))
            .await
            .unwrap(),
        0
    );
    assert_eq!(s.devices_for_user("u4").await.unwrap().len(), 2);
    let after = ios.updated_at + 1;
    assert_eq!(
        s.delete_token(ProviderKind::Apns, &hex, Some(after))
            .await
            .unwrap(),
        1
    );
    let left = s.devices_for_user("u4").await.unwrap();
    assert_eq!((left.len(), left[0].provider), (1, ProviderKind::Fcm));
}

async fn register_replace_list_delete(s: &Store) {
    s.upsert_device("u1", "phone", &fcm("tok-a", Platform::Android))
        .await
        .unwrap();
    s.upsert_device("u1", "phone", &fcm("tok-b", Platform::Android))
        .await
        .unwrap();
    s.upsert_device("u1", "web", &fcm("tok-c", Platform::Web))
        .await
        .unwrap();
    let list = s.devices_for_user("u1").await.unwrap();
    assert_eq!(list.len(), 2);
    assert_eq!(
        (list[0].device_id.as_str(), list[0].token.as_str()),
        ("phone", "tok-b")
    );
    assert_eq!(list[1].platform, Platform::Web);
    assert!(s.delete_device("u1", "web").await.unwrap());
    assert!(!s.delete_device("u1", "web").await.unwrap());
    assert!(!s.delete_device("someone-else", "phone").await.unwrap());
    assert_eq!(
        s.delete_token(ProviderKind::Fcm, "tok-b", None)
            .await
            .unwrap(),
        1
    );
    assert!(s.devices_for_user("u1").await.unwrap().is_empty());
}

async fn a_token_moves_with_its_install(s: &Store) {
    s.upsert_device("u2", "phone", &fcm("tok", Platform::Android))
        .await
        .unwrap();
    s.upsert_device("u3", "phone", &fcm("tok", Platform::Ios))
        .await
        .unwrap();
    assert!(s.devices_for_user("u2").await.unwrap().is_empty());
    let moved = s.devices_for_user("u3").await.unwrap();
    assert_eq!((moved.len(), moved[0].platform), (1, Platform::Ios));
}

/// Registrations of new devices of one user, all at once, stop exactly at the cap; a known
/// device re-registers past it.
async fn concurrent_registrations_stop_at_the_cap(s: &Store) {
    let s = s.clone().limit_devices_per_user(5);
    let racing = (0..20).map(|i| {
        let s = s.clone();
        tokio::spawn(async move {
            s.upsert_device(
                "racer",
                &format!("d{i}"),
                &fcm(format!("t{i}"), Platform::Web),
            )
            .await
        })
    });
    let results: Vec<_> = futures::future::join_all(racing)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    let ok = results.iter().filter(|r| r.is_ok()).count();
    let refused = results
        .iter()
        .filter(|r| matches!(r, Err(StoreError::TooManyDevices(5))))
        .count();
    assert_eq!((ok, refused), (5, 15), "{results:?}");
    let devices = s.devices_for_user("racer").await.unwrap();
    assert_eq!(devices.len(), 5);
    let known = &devices[0].device_id;
    s.upsert_device("racer", known, &fcm("t-new", Platform::Web))
        .await
        .unwrap();
}

fn keep(user: &str, ids: &[&str]) -> Write {
    keep_lazily(user, ids, false)
}

fn keep_lazily(user: &str, ids: &[&str], lazy: bool) -> Write {
    Write::Keep {
        rows: ids
            .iter()
            .map(|id| InboxRow {
                user_id: user.into(),
                id: (*id).into(),
                payload: format!("{{\"id\":\"{id}\"}}"),
            })
            .collect(),
        max_per_user: 3,
        lazy,
    }
}

fn put(id: &str, devices: &[&str], claim: Option<&str>) -> Write {
    Write::Put(NewRows {
        id: id.into(),
        payload: "{}".into(),
        rows: devices
            .iter()
            .map(|d| NewRow {
                device_id: (*d).into(),
                user_id: "u".into(),
                token: format!("tok-{d}"),
                platform: "android".into(),
                provider: "fcm".into(),
                app: String::new(),
            })
            .collect(),
        claim: claim.map(Into::into),
        due_at: 0,
        created_at: 0,
        deadline_at: i64::MAX,
    })
}

fn finish(id: &str, device: &str, claim: &str) -> Write {
    Write::Change(Change::Finish {
        id: id.into(),
        device_id: device.into(),
        claim: claim.into(),
        accepted: true,
    })
}

async fn write(s: &Store, w: Write) -> Written {
    s.write(w).await.unwrap()
}

/// Inbox rows kept to the bound, sends stored once, claimed, and ended exactly once.
async fn the_writer_keeps_rows_and_sends_in_call_order(s: &Store) {
    let (a, b) = (keep("ann", &["01", "02"]), keep("ann", &["03", "04", "05"]));
    let (a, b) = tokio::join!(s.write(a), s.write(b));
    assert!(matches!(
        (a.unwrap(), b.unwrap()),
        (Written::Kept, Written::Kept)
    ));
    let page = s.inbox_page("ann", None, "", 10).await.unwrap();
    let ids: Vec<&str> = page.iter().map(|(id, _)| id.as_str()).collect();
    assert_eq!(ids, ["03", "04", "05"], "the newest 3 kept, oldest first");
    // A full inbox: each append drops its oldest, one at a time or several in one write.
    write(s, keep("ann", &["06"])).await;
    let (c, d) = tokio::join!(
        s.write(keep("ann", &["07"])),
        s.write(keep("ann", &["08", "09"]))
    );
    c.unwrap();
    d.unwrap();
    write(s, keep("cat", &["01"])).await;
    let page = s.inbox_page("ann", None, "", 10).await.unwrap();
    let ids: Vec<&str> = page.iter().map(|(id, _)| id.as_str()).collect();
    assert_eq!(ids, ["07", "08", "09"], "still the newest 3 once full");
    assert_eq!(s.inbox_page("cat", None, "", 10).await.unwrap().len(), 1);

    let Written::Stored(first) = write(s, put("n1", &["d1", "d2"], Some("c1"))).await else {
        panic!("a put answers Stored");
    };
    assert_eq!(first, ["d1", "d2"]);
    let Written::Stored(again) = write(s, put("n1", &["d1"], None)).await else {
        panic!("a put answers Stored");
    };
    assert!(again.is_empty(), "a send already queued is kept as it was");

    // Held by c1 until due_at 0 (past): a sweep may claim them.
    let Written::Claimed(rows) = write(
        s,
        Write::Claim {
            claim: "c2".into(),
            now: 1,
            lease_end: 1_000,
            limit: 10,
        },
    )
    .await
    else {
        panic!("a claim answers Claimed");
    };
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0].token, format!("tok-{}", rows[0].device_id));

    let ends = tokio::join!(
        s.write(finish("n1", "d1", "c1")),
        s.write(finish("n1", "d1", "c2")),
        s.write(finish("n1", "d2", "c2")),
    );
    let ends: Vec<Written> = [ends.0, ends.1, ends.2].map(Result::unwrap).into();
    assert!(
        matches!(
            ends.as_slice(),
            [
                Written::Applied(Applied::Finished(Finished::Lost)),
                Written::Applied(Applied::Finished(Finished::Done)),
                Written::Applied(Applied::Finished(Finished::Last { accepted: true })),
            ]
        ),
        "{ends:?}"
    );
    assert_eq!(s.queue_stats().await.unwrap().0, 0);

    // A lazy write is stored; one that somebody waits for, handed over after it, does not
    // wait for the lazy one's company.
    let lazy = s.write(keep_lazily("bob", &["01"], true));
    // Long enough for the writer to be holding the lazy row back when the put comes.
    tokio::time::sleep(LAZY_WRITE_DELAY / 5).await;
    let started = std::time::Instant::now();
    write(s, put("n2", &["d1"], None)).await;
    // Held back, it would wait out the rest of the delay (four fifths of it).
    assert!(
        started.elapsed() < LAZY_WRITE_DELAY / 2,
        "a put behind a lazy inbox row waited {:?}",
        started.elapsed()
    );
    assert!(matches!(lazy.await.unwrap(), Written::Kept));
    assert_eq!(s.inbox_page("bob", None, "", 10).await.unwrap().len(), 1);
}

#[tokio::test]
async fn the_store_writer_on_a_sqlite_file_and_in_memory() {
    let dir = tempfile::tempdir().unwrap();
    let file = Store::connect(&format!("sqlite://{}/w.db?mode=rwc", dir.path().display()))
        .await
        .unwrap();
    the_writer_keeps_rows_and_sends_in_call_order(&file).await;
    let memory = Store::connect("sqlite::memory:").await.unwrap();
    the_writer_keeps_rows_and_sends_in_call_order(&memory).await;
}

#[tokio::test]
async fn the_store_writer_on_postgres() {
    let db = TestDb::create().await;
    let s = Store::connect(&db.url).await.unwrap();
    the_writer_keeps_rows_and_sends_in_call_order(&s).await;
    s.close().await;
}

#[tokio::test]
async fn sqlite_store() {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::connect(&format!("sqlite://{}/t.db?mode=rwc", dir.path().display()))
        .await
        .unwrap();
    register_replace_list_delete(&s).await;
    a_token_moves_with_its_install(&s).await;
    concurrent_registrations_stop_at_the_cap(&s).await;
    providers_apps_and_gone_tokens(&s).await;
    s.ping().await.unwrap();
}

#[tokio::test]
async fn postgres_store() {
    let db = TestDb::create().await;
    let s = Store::connect(&db.url).await.unwrap();
    register_replace_list_delete(&s).await;
    a_token_moves_with_its_install(&s).await;
    concurrent_registrations_stop_at_the_cap(&s).await;
    providers_apps_and_gone_tokens(&s).await;
    s.ping().await.unwrap();
    // Connecting again (a second node) finds the schema up to date.
    Store::connect(&db.url).await.unwrap().close().await;
    s.close().await;
}

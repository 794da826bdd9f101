//! The per-user inbox over HTTP (`GET /v1/inbox`, `GET /v1/inbox/{id}`): ordering and cursor
//! paging, retention and the per-user bound, isolation between users, `ETag` / `304` on one
//! node and across two nodes on Redis, and what survives a restart (SQLite) and a SIGKILL
//! (Redis).

mod common;

use std::time::Duration;

use common::deploy::deploy;
use common::{Options, TestApp};
use reqwest::StatusCode;
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(5);
const REDIS: &str = "redis://127.0.0.1:6379";

/// `GET <path>` as `user`, with `If-None-Match: tag` if given: (status, ETag, body).
async fn get(
    app: &TestApp,
    user: &str,
    path: &str,
    tag: Option<&str>,
) -> (StatusCode, String, Value) {
    let mut req = app.http.get(app.url(path)).bearer_auth(app.token(user));
    if let Some(t) = tag {
        req = req.header("if-none-match", t);
    }
    let resp = req.send().await.expect("the node answers");
    let status = resp.status();
    let etag = resp
        .headers()
        .get("etag")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    let text = resp.text().await.unwrap();
    if status == StatusCode::NOT_MODIFIED {
        assert!(text.is_empty(), "a 304 has no body: {text}");
    }
    (
        status,
        etag,
        serde_json::from_str(&text).unwrap_or(Value::Null),
    )
}

/// Notifies `user` `n` times with data `{"n": "<i>"}`; returns the ids.
async fn notify_n(app: &TestApp, user: &str, n: usize) -> Vec<String> {
    let mut ids = Vec::new();
    for i in 0..n {
        let (status, answer) = app
            .notify(json!({"user_id": user, "data": {"n": i.to_string()}}))
            .await;
        assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
        ids.push(answer["id"].as_str().unwrap().to_string());
    }
    ids
}

fn ids_of(page: &Value) -> Vec<String> {
    page["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|i| i["id"].as_str().unwrap().to_string())
        .collect()
}

/// Repeats `get` until `done` holds of its answer (or `WAIT` passes); returns the last answer.
async fn get_until(
    app: &TestApp,
    user: &str,
    path: &str,
    tag: Option<&str>,
    done: impl Fn(&(StatusCode, String, Value)) -> bool,
) -> (StatusCode, String, Value) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let answer = get(app, user, path, tag).await;
        if done(&answer) || tokio::time::Instant::now() > deadline {
            return answer;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Waits until the newest page of `user` on `app` ends with `last`.
async fn wait_for(app: &TestApp, user: &str, last: &str) -> Value {
    let (_, _, page) = get_until(app, user, "/v1/inbox", None, |a| a.2["next"] == last).await;
    assert_eq!(page["next"], last, "{last} never reached the inbox: {page}");
    page
}

#[tokio::test]
async fn the_inbox_pages_oldest_first_from_a_cursor() {
    let app = TestApp::spawn().await;
    let ids = notify_n(&app, "alice", 5).await;

    let newest = wait_for(&app, "alice", &ids[4]).await;
    let (_, _, newest_two) = get(&app, "alice", "/v1/inbox?limit=2", None).await;
    let (_, _, first) = get(
        &app,
        "alice",
        &format!("/v1/inbox?after={}&limit=2", ids[0]),
        None,
    )
    .await;
    let cursor = first["next"].as_str().unwrap().to_string();
    let (_, _, second) = get(
        &app,
        "alice",
        &format!("/v1/inbox?after={cursor}&limit=2"),
        None,
    )
    .await;
    let (_, _, end) = get(&app, "alice", &format!("/v1/inbox?after={}", ids[4]), None).await;

    assert_eq!(ids_of(&newest), ids);
    assert_eq!(newest["items"][2]["data"]["n"], "2");
    assert!(newest["items"][0]["sent_at"].as_u64().is_some());
    assert_eq!(ids_of(&newest_two), ids[3..5]);
    assert_eq!(ids_of(&first), ids[1..3]);
    assert_eq!(cursor, ids[2]);
    assert_eq!(ids_of(&second), ids[3..5]);
    assert_eq!(ids_of(&end), Vec::<String>::new());
    assert_eq!(
        end["next"],
        ids[4].as_str(),
        "an empty page keeps the cursor"
    );
}

#[tokio::test]
async fn the_inbox_keeps_the_newest_per_user_and_drops_what_is_past_retention() {
    let app = TestApp::spawn_with(
        Options::default()
            .env("SWITCHBOARD__INBOX__MAX_PER_USER", "3")
            .env("SWITCHBOARD__INBOX__RETENTION_SECS", "2"),
    )
    .await;
    let ids = notify_n(&app, "alice", 5).await;

    let page = wait_for(&app, "alice", &ids[4]).await;
    let (old, _, _) = get(&app, "alice", &format!("/v1/inbox/{}", ids[0]), None).await;
    assert_eq!(ids_of(&page), ids[2..5], "the oldest two are dropped");
    assert_eq!(old, StatusCode::NOT_FOUND);

    tokio::time::sleep(Duration::from_millis(2200)).await;
    let (_, _, later) = get(&app, "alice", "/v1/inbox", None).await;
    let (gone, _, _) = get(&app, "alice", &format!("/v1/inbox/{}", ids[4]), None).await;
    assert_eq!(
        ids_of(&later),
        Vec::<String>::new(),
        "past retention: {later}"
    );
    assert_eq!(gone, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn another_users_notification_is_not_found_like_an_unknown_one() {
    let app = TestApp::spawn().await;
    let ids = notify_n(&app, "alice", 1).await;
    wait_for(&app, "alice", &ids[0]).await;
    let path = format!("/v1/inbox/{}", ids[0]);

    let (own, tag, body) = get(&app, "alice", &path, None).await;
    let (theirs, _, error) = get(&app, "bob", &path, None).await;
    let (unknown, _, _) = get(
        &app,
        "alice",
        "/v1/inbox/01a2281e-af88-7611-8000-3c5e1f2a9b40",
        None,
    )
    .await;
    let (bobs_inbox, _, bobs_page) = get(&app, "bob", "/v1/inbox", None).await;
    let (again, _, _) = get(&app, "alice", &path, Some(&tag)).await;

    assert_eq!(own, StatusCode::OK);
    assert_eq!(body["id"], ids[0].as_str());
    assert_eq!(body["data"]["n"], "0");
    assert_eq!(theirs, StatusCode::NOT_FOUND);
    assert_eq!(error["error"]["code"], "not_found");
    assert_eq!(unknown, StatusCode::NOT_FOUND);
    assert_eq!(bobs_inbox, StatusCode::OK);
    assert_eq!(ids_of(&bobs_page), Vec::<String>::new());
    assert_eq!(again, StatusCode::NOT_MODIFIED);
}

#[tokio::test]
async fn an_unchanged_inbox_answers_304_without_a_read_and_a_new_notification_changes_the_tag() {
    let app = TestApp::spawn().await;
    let ids = notify_n(&app, "alice", 1).await;
    wait_for(&app, "alice", &ids[0]).await;
    let poll = format!("/v1/inbox?after={}", ids[0]);
    let (_, tag, _) = get(&app, "alice", &poll, None).await;
    let reads = app
        .metric("switchboard_inbox_reads_total{result=\"page\"}")
        .await;

    for _ in 0..3 {
        let (status, same, _) = get(&app, "alice", &poll, Some(&tag)).await;
        assert_eq!(status, StatusCode::NOT_MODIFIED);
        assert_eq!(same, tag);
    }
    assert_eq!(
        app.metric("switchboard_inbox_reads_total{result=\"page\"}")
            .await,
        reads,
        "304s read nothing"
    );
    assert_eq!(
        app.metric("switchboard_inbox_reads_total{result=\"not_modified\"}")
            .await,
        3.0
    );

    let new = notify_n(&app, "alice", 1).await;
    let answer = get_until(&app, "alice", &poll, Some(&tag), |a| a.0 == StatusCode::OK).await;
    assert_eq!(answer.0, StatusCode::OK, "the tag never changed");
    assert_ne!(answer.1, tag);
    assert_eq!(ids_of(&answer.2), new);
    // The page brought the client up to date: its next poll, from the new cursor, is a 304.
    let next = format!("/v1/inbox?after={}", new[0]);
    let (status, _, _) = get(&app, "alice", &next, Some(&answer.1)).await;
    assert_eq!(status, StatusCode::NOT_MODIFIED);
}

#[tokio::test]
async fn a_notification_accepted_on_one_node_changes_the_tag_on_another() {
    let d = deploy(2, REDIS).await;
    let (a, b) = (&d.nodes[0], &d.nodes[1]);
    let first = notify_n(a, "alice", 1).await;
    wait_for(b, "alice", &first[0]).await;
    let poll = format!("/v1/inbox?after={}", first[0]);
    let (_, tag, _) = get(b, "alice", &poll, None).await;
    let (unchanged, _, _) = get(b, "alice", &poll, Some(&tag)).await;
    let reads = b
        .metric("switchboard_inbox_reads_total{result=\"page\"}")
        .await;

    let new = notify_n(a, "alice", 1).await;
    let answer = get_until(b, "alice", &poll, Some(&tag), |a| a.0 == StatusCode::OK).await;

    assert_eq!(unchanged, StatusCode::NOT_MODIFIED);
    assert_eq!(answer.0, StatusCode::OK, "node b never saw node a's append");
    assert_ne!(answer.1, tag);
    assert_eq!(ids_of(&answer.2), new);
    assert_eq!(
        b.metric("switchboard_inbox_reads_total{result=\"page\"}")
            .await,
        reads + 1.0,
        "only the changed poll read the inbox"
    );
}

#[tokio::test]
async fn the_inbox_survives_a_restart_of_a_single_node() {
    let dir = tempfile::tempdir().unwrap();
    let store = format!("sqlite://{}/inbox.db?mode=rwc", dir.path().display());
    let opts = || Options::default().env("SWITCHBOARD__STORE__URL", &store);
    let mut app = TestApp::spawn_with(opts()).await;
    let ids = notify_n(&app, "alice", 3).await;

    app.sigterm();
    assert!(app.wait_exit(Duration::from_secs(10)).await.success());
    let restarted = TestApp::spawn_with(opts()).await;

    let page = wait_for(&restarted, "alice", &ids[2]).await;
    assert_eq!(ids_of(&page), ids);
}

#[tokio::test]
async fn the_inbox_survives_a_node_killed_with_sigkill() {
    let mut d = deploy(2, REDIS).await;
    let ids = notify_n(&d.nodes[0], "alice", 3).await;
    wait_for(&d.nodes[0], "alice", &ids[2]).await;

    d.nodes[0].sigkill().await;

    let page = wait_for(&d.nodes[1], "alice", &ids[2]).await;
    let (status, _, one) = get(&d.nodes[1], "alice", &format!("/v1/inbox/{}", ids[1]), None).await;
    assert_eq!(ids_of(&page), ids);
    assert_eq!(status, StatusCode::OK);
    assert_eq!(one["id"], ids[1].as_str());
}

#[tokio::test]
async fn a_bad_cursor_or_limit_is_a_400() {
    let app = TestApp::spawn().await;

    let (cursor, _, error) = get(&app, "alice", "/v1/inbox?after=nope", None).await;
    let (zero, _, _) = get(&app, "alice", "/v1/inbox?limit=0", None).await;
    let (big, _, _) = get(&app, "alice", "/v1/inbox?limit=1001", None).await;
    let anonymous = app
        .http
        .get(app.url("/v1/inbox"))
        .send()
        .await
        .unwrap()
        .status();

    assert_eq!(cursor, StatusCode::BAD_REQUEST);
    assert_eq!(error["error"]["code"], "invalid_request");
    assert_eq!(zero, StatusCode::BAD_REQUEST);
    assert_eq!(big, StatusCode::BAD_REQUEST);
    assert_eq!(anonymous, StatusCode::UNAUTHORIZED);
}

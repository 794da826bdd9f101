//! Several apps on one instance: the default app (top-level `[fcm]`, `[apns]`) and `[[apps]]`
//! entries, each with its own Firebase project (its own fcm-mock and service-account key) and
//! APNs topic. A device is sent to only with its app's credentials; a notify naming `app` goes
//! only to that app's devices. Private push (per app, per notification) carries only the id,
//! and the app fetches the content by it (`GET /v1/inbox/{id}`).

mod common;

use std::time::Duration;

use common::apns::ApnsMock;
use common::{Mock, Options, TestApp};
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(10);
const TOPIC_A: &str = "com.example.a";
const TOPIC_B: &str = "com.example.b";

struct Apps {
    app: TestApp,
    fcm_a: Mock,
    fcm_b: Mock,
    apns: ApnsMock,
    _keys: tempfile::TempDir,
}

/// The default app on project-a and TOPIC_A; app `b` on project-b and TOPIC_B, private when
/// `b_private`.
async fn start(b_private: bool) -> Apps {
    let keys = tempfile::tempdir().unwrap();
    let fcm_a = Mock::start_project(keys.path(), "project-a").await;
    let fcm_b = Mock::start_project(keys.path(), "project-b").await;
    let apns = ApnsMock::start(keys.path(), &[TOPIC_A, TOPIC_B], Duration::from_secs(1200)).await;
    let toml = format!(
        "[fcm]\nproject_id = \"project-a\"\nservice_account = {:?}\nendpoint = {:?}\n\n\
         [apns]\n{}\n\
         [[apps]]\nid = \"b\"\nprivate = {b_private}\n\
         [apps.fcm]\nproject_id = \"project-b\"\nservice_account = {:?}\nendpoint = {:?}\n\
         [apps.apns]\n{}",
        fcm_a.key_path.display().to_string(),
        fcm_a.url,
        apns.toml(TOPIC_A),
        fcm_b.key_path.display().to_string(),
        fcm_b.url,
        apns.toml(TOPIC_B),
    );
    let app = TestApp::spawn_with(Options::default().config_toml(toml)).await;
    Apps {
        app,
        fcm_a,
        fcm_b,
        apns,
        _keys: keys,
    }
}

/// One Android and one iOS device in each app.
async fn register_four(app: &TestApp, user: &str) {
    for (device, body) in [
        ("droid-a", json!({"provider": "fcm", "token": "tok-a"})),
        (
            "droid-b",
            json!({"provider": "fcm", "token": "tok-b", "app": "b"}),
        ),
        (
            "ios-a",
            json!({"provider": "apns", "token": "aa".repeat(32)}),
        ),
        (
            "ios-b",
            json!({"provider": "apns", "token": "bb".repeat(32), "app": "b"}),
        ),
    ] {
        app.register(user, device, body).await;
    }
}

fn fcm_tokens(messages: &[Value]) -> Vec<&str> {
    messages
        .iter()
        .map(|m| m["message"]["token"].as_str().unwrap())
        .collect()
}

fn apns_sends(messages: &[Value]) -> Vec<(String, String)> {
    let mut sends: Vec<(String, String)> = messages
        .iter()
        .map(|m| {
            (
                m["topic"].as_str().unwrap().to_string(),
                m["device_token"].as_str().unwrap()[..2].to_string(),
            )
        })
        .collect();
    sends.sort();
    sends
}

#[tokio::test]
async fn two_apps_receive_only_their_own_devices_messages_with_their_own_credentials() {
    let a = start(false).await;
    register_four(&a.app, "nora").await;

    // No app named: every device, each through its own app's project and topic.
    let (_, answer) = a
        .app
        .notify(json!({"user_id": "nora", "notification": {"title": "all"}}))
        .await;
    let id = answer["id"].as_str().unwrap();
    let record = a.app.wait_status(id, "fcm_accepted", WAIT).await;
    assert_eq!(
        record["deliveries"].as_array().unwrap().len(),
        4,
        "{record}"
    );
    let from_a = a.fcm_a.wait_messages(1, WAIT).await;
    let from_b = a.fcm_b.wait_messages(1, WAIT).await;
    assert_eq!(fcm_tokens(&from_a), ["tok-a"]);
    assert_eq!(fcm_tokens(&from_b), ["tok-b"]);
    assert!(
        from_b[0]["name"].as_str().unwrap().contains("project-b"),
        "{}",
        from_b[0]
    );
    let sends = apns_sends(&a.apns.wait_messages(2, WAIT).await);
    assert_eq!(
        sends,
        [
            (TOPIC_A.to_string(), "aa".to_string()),
            (TOPIC_B.to_string(), "bb".to_string())
        ]
    );

    // App b only.
    let (_, answer) = a
        .app
        .notify(json!({"user_id": "nora", "app": "b", "notification": {"title": "b only"}}))
        .await;
    let id = answer["id"].as_str().unwrap();
    let record = a.app.wait_status(id, "fcm_accepted", WAIT).await;
    let mut devices: Vec<&str> = record["deliveries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["device_id"].as_str().unwrap())
        .collect();
    devices.sort();
    assert_eq!(devices, ["droid-b", "ios-b"], "{record}");
    assert_eq!(
        fcm_tokens(&a.fcm_b.wait_messages(2, WAIT).await),
        ["tok-b", "tok-b"]
    );
    let apns = a.apns.wait_messages(3, WAIT).await;
    assert_eq!(apns.len(), 3);
    assert_eq!(apns[2]["topic"], TOPIC_B);
    // Nothing more reached app a's project.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(a.fcm_a.messages().await.len(), 1);

    // An app with no device of the user's: nothing to send.
    let (_, answer) = a
        .app
        .notify(json!({"user_id": "nora", "app": "c", "data": {"k": "v"}}))
        .await;
    assert_eq!(answer["route"], "none", "{answer}");
}

#[tokio::test]
async fn a_private_push_carries_only_the_notification_id() {
    let a = start(true).await;
    register_four(&a.app, "omar").await;
    let content = json!({"user_id": "omar", "data": {"secret": "hush-hush-7731"},
        "notification": {"title": "Salary paid", "body": "1234"}});

    // App b is private: its devices get only the id; app a's get the content.
    let (_, answer) = a.app.notify(content.clone()).await;
    let id = answer["id"].as_str().unwrap().to_string();
    a.app.wait_status(&id, "fcm_accepted", WAIT).await;
    let b = &a.fcm_b.wait_messages(1, WAIT).await[0]["message"];
    assert_eq!(b["data"], json!({"switchboard_id": id}), "{b}");
    assert!(b.get("notification").is_none(), "{b}");
    let fcm_a = &a.fcm_a.wait_messages(1, WAIT).await[0]["message"];
    assert_eq!(fcm_a["notification"]["title"], "Salary paid");
    let apns = a.apns.wait_messages(2, WAIT).await;
    for m in &apns {
        if m["topic"] == TOPIC_B {
            assert_eq!(
                m["payload"],
                json!({"aps": {"content-available": 1}, "switchboard_id": id})
            );
            assert_eq!(m["push_type"], "background");
        } else {
            assert_eq!(m["payload"]["aps"]["alert"]["title"], "Salary paid");
        }
    }

    // A private notification: every device gets only the id.
    let mut private = content.clone();
    private["private"] = json!(true);
    let (_, answer) = a.app.notify(private).await;
    let id = answer["id"].as_str().unwrap().to_string();
    a.app.wait_status(&id, "fcm_accepted", WAIT).await;
    let fcm_a = &a.fcm_a.wait_messages(2, WAIT).await[1]["message"];
    assert_eq!(fcm_a["data"], json!({"switchboard_id": id}), "{fcm_a}");
    assert!(fcm_a.get("notification").is_none());
    let apns = a.apns.wait_messages(4, WAIT).await;
    for m in &apns[2..] {
        assert_eq!(
            m["payload"],
            json!({"aps": {"content-available": 1}, "switchboard_id": id})
        );
    }
    for m in a
        .apns
        .messages()
        .await
        .iter()
        .chain(a.fcm_a.messages().await.iter())
    {
        let raw = m.to_string();
        if raw.contains(&id) {
            assert!(
                !raw.contains("Salary") && !raw.contains("hush-hush-7731"),
                "content leaked: {raw}"
            );
        }
    }
}

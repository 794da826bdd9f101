//! The two servers under test, and what their requests look like: Switchboard (JWT streams,
//! JSON producer API) and Nchan (a channel per user, the timestamp as the message body).

use std::sync::Arc;

use clap::ValueEnum;
use http::Method;
use jsonwebtoken::{encode, EncodingKey, Header};
use serde::Serialize;

use crate::publish::{request, Body};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Switchboard,
    Nchan,
}

/// How to address one server.
#[derive(Clone)]
pub struct Target {
    pub kind: Kind,
    pub user_prefix: String,
    pub producer_key: String,
    jwt_key: Arc<EncodingKey>,
    jwt_ttl_secs: u64,
}

#[derive(Serialize)]
struct Claims<'a> {
    sub: &'a str,
    exp: u64,
}

const JSON: &str = "application/json";

impl Target {
    pub fn new(kind: Kind, user_prefix: &str, producer_key: &str, jwt_secret: &str) -> Target {
        Target {
            kind,
            user_prefix: user_prefix.to_string(),
            producer_key: producer_key.to_string(),
            jwt_key: Arc::new(EncodingKey::from_secret(jwt_secret.as_bytes())),
            jwt_ttl_secs: 24 * 3600,
        }
    }

    pub fn user(&self, i: usize) -> String {
        format!("{}{i}", self.user_prefix)
    }

    /// A client JWT for user `i` (HS256, `sub` + `exp`), as `switchboard token` mints them.
    pub fn client_token(&self, i: usize) -> String {
        let exp = crate::stats::now_us() / 1_000_000 + self.jwt_ttl_secs;
        let user = self.user(i);
        encode(
            &Header::default(),
            &Claims { sub: &user, exp },
            &self.jwt_key,
        )
        .expect("HS256 over plain claims cannot fail")
    }

    /// The request head that opens stream `i` (user `i`, or everybody on `topic`).
    pub fn stream_request(&self, host: &str, i: usize, topic: Option<&str>) -> Vec<u8> {
        match self.kind {
            Kind::Switchboard => {
                let topics = topic.map(|t| format!("&topics={t}")).unwrap_or_default();
                format!(
                    "GET /v1/events?device_id=d{topics} HTTP/1.1\r\nHost: {host}\r\n\
                     Authorization: Bearer {}\r\nAccept: text/event-stream\r\n\r\n",
                    self.client_token(i)
                )
            }
            Kind::Nchan => {
                let channel = topic.map(str::to_string).unwrap_or_else(|| self.user(i));
                format!(
                    "GET /sub/{channel} HTTP/1.1\r\nHost: {host}\r\n\
                     Accept: text/event-stream\r\n\r\n"
                )
            }
        }
        .into_bytes()
    }

    /// The request head of a client that resumes: stream `i` (with acks, Switchboard) sending
    /// the last event id it received, as an EventSource does when it reconnects.
    pub fn resume_request(
        &self,
        host: &str,
        i: usize,
        ack: bool,
        last_id: Option<&str>,
    ) -> Vec<u8> {
        let resume = last_id
            .map(|id| format!("Last-Event-ID: {id}\r\n"))
            .unwrap_or_default();
        match self.kind {
            Kind::Switchboard => format!(
                "GET /v1/events?device_id=d{} HTTP/1.1\r\nHost: {host}\r\n\
                 Authorization: Bearer {}\r\nAccept: text/event-stream\r\n{resume}\r\n",
                if ack { "&ack=true" } else { "" },
                self.client_token(i)
            ),
            Kind::Nchan => format!(
                "GET /sub/{} HTTP/1.1\r\nHost: {host}\r\n\
                 Accept: text/event-stream\r\n{resume}\r\n",
                self.user(i)
            ),
        }
        .into_bytes()
    }

    /// `POST /v1/ack` of notification `id` by user `i` (Switchboard).
    pub fn ack(&self, host: &str, i: usize, id: &str) -> http::Request<Body> {
        request(
            Method::POST,
            host,
            "/v1/ack",
            Some(&self.client_token(i)),
            Some((JSON, format!(r#"{{"ids":["{id}"]}}"#))),
        )
    }

    /// One notification to user `i`, stamped `ts`.
    pub fn unicast(&self, host: &str, i: usize, ts: u64) -> http::Request<Body> {
        match self.kind {
            Kind::Switchboard => {
                let body = format!(r#"{{"user_id":"{}","data":{{"ts":"{ts}"}}}}"#, self.user(i));
                self.produce(host, "/v1/notify", body)
            }
            Kind::Nchan => request(
                Method::POST,
                host,
                &format!("/pub/{}", self.user(i)),
                None,
                Some(("text/plain", ts.to_string())),
            ),
        }
    }

    /// Notifications to each of `users` in one request (Switchboard).
    pub fn batch(
        &self,
        host: &str,
        users: impl Iterator<Item = usize>,
        ts: u64,
    ) -> http::Request<Body> {
        let mut body = String::with_capacity(4096);
        body.push_str(r#"{"notifications":["#);
        for (k, i) in users.enumerate() {
            if k > 0 {
                body.push(',');
            }
            let user = self.user(i);
            body.push_str(&format!(r#"{{"user_id":"{user}","data":{{"ts":"{ts}"}}}}"#));
        }
        body.push_str("]}");
        self.produce(host, "/v1/notify/batch", body)
    }

    /// Broadcast number `seq` on `topic`, stamped `ts`.
    pub fn broadcast(&self, host: &str, topic: &str, seq: u64, ts: u64) -> http::Request<Body> {
        match self.kind {
            Kind::Switchboard => {
                let body = format!(r#"{{"topic":"{topic}","data":{{"ts":"{ts}","seq":"{seq}"}}}}"#);
                self.produce(host, "/v1/broadcast", body)
            }
            Kind::Nchan => request(
                Method::POST,
                host,
                &format!("/pub/{topic}"),
                None,
                Some(("text/plain", format!("{ts} {seq}"))),
            ),
        }
    }

    /// Registers device `d-<i>` of user `i` with FCM token `tok-<i>`, or with an APNs token
    /// (64 hex digits from `i`) (Switchboard).
    pub fn register_device(&self, host: &str, i: usize, apns: bool) -> http::Request<Body> {
        let body = if apns {
            format!(r#"{{"provider":"apns","token":"{i:064x}"}}"#)
        } else {
            format!(r#"{{"fcm_token":"tok-{i}","platform":"android"}}"#)
        };
        self.register_device_as(host, i, body)
    }

    /// Registers device `d-<i>` of user `i` with the registration `body` (Switchboard).
    pub fn register_device_as(&self, host: &str, i: usize, body: String) -> http::Request<Body> {
        request(
            Method::PUT,
            host,
            &format!("/v1/devices/d-{i}"),
            Some(&self.client_token(i)),
            Some((JSON, body)),
        )
    }

    fn produce(&self, host: &str, path: &str, body: String) -> http::Request<Body> {
        request(
            Method::POST,
            host,
            path,
            Some(&self.producer_key),
            Some((JSON, body)),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{decode, DecodingKey, Validation};

    #[test]
    fn tokens_verify_with_the_shared_secret() {
        let t = Target::new(Kind::Switchboard, "u-", "k", "s3cret");
        let token = t.client_token(7);
        #[derive(serde::Deserialize)]
        struct C {
            sub: String,
        }
        let got = decode::<C>(
            &token,
            &DecodingKey::from_secret(b"s3cret"),
            &Validation::default(),
        )
        .unwrap();
        assert_eq!(got.claims.sub, "u-7");
    }

    #[test]
    fn batches_are_valid_json() {
        let t = Target::new(Kind::Switchboard, "u-", "k", "s");
        let req = t.batch("h", [9, 0, 1].into_iter(), 5);
        let body = req.into_body();
        let bytes = futures_bytes(body);
        let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        let users: Vec<_> = v["notifications"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["user_id"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(users, ["u-9", "u-0", "u-1"]);
    }

    fn futures_bytes(body: Body) -> bytes::Bytes {
        use http_body_util::BodyExt;
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(body.collect())
            .unwrap()
            .to_bytes()
    }
}

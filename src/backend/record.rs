//! What a notification's record says: the route the router chose, its [`Status`], and one
//! [`Delivery`] per channel and device, as both ledgers keep them and
//! `GET /v1/notifications/{id}` shows them ([`RecordView`]).

use serde::{Deserialize, Serialize};

use crate::metrics::Label;

/// The routing decision reported to producers: `sse` (a live stream on some node), `fcm` (no
/// stream: sent to the user's registered devices) or `none` (no stream, no device).
// The router makes it (the only place that chooses); it lives here, beside the record that
// keeps it, so that the ledger below the router can store it. (A plain comment: the doc
// comment is the OpenAPI document's description.)
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Route {
    Sse,
    Fcm,
    None,
}

impl Route {
    pub fn parse(s: &str) -> Option<Route> {
        Route::ALL.iter().copied().find(|r| r.as_str() == s)
    }
}

impl Label for Route {
    const ALL: &'static [Route] = &[Route::Sse, Route::Fcm, Route::None];

    fn index(self) -> usize {
        self as usize
    }

    fn as_str(self) -> &'static str {
        match self {
            Route::Sse => "sse",
            Route::Fcm => "fcm",
            Route::None => "none",
        }
    }
}

/// A notification's lifecycle (docs/API.md). `pending`, `delivered` and `fcm_retrying` (its
/// push waits in the durable queue for another attempt) can still change; the others are final.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Pending,
    Delivered,
    Acked,
    FcmAccepted,
    FcmFailed,
    Expired,
    FcmRetrying,
}

impl Status {
    pub const ALL: [Status; 7] = [
        Status::Pending,
        Status::Delivered,
        Status::Acked,
        Status::FcmAccepted,
        Status::FcmFailed,
        Status::Expired,
        Status::FcmRetrying,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pending => "pending",
            Status::Delivered => "delivered",
            Status::Acked => "acked",
            Status::FcmAccepted => "fcm_accepted",
            Status::FcmFailed => "fcm_failed",
            Status::Expired => "expired",
            Status::FcmRetrying => "fcm_retrying",
        }
    }

    pub fn parse(s: &str) -> Option<Status> {
        Status::ALL.into_iter().find(|x| x.as_str() == s)
    }

    /// Statuses only move up: a final status is never replaced.
    pub fn rank(self) -> u8 {
        match self {
            Status::Pending => 0,
            Status::Delivered | Status::FcmRetrying => 1,
            _ => 2,
        }
    }

    pub fn is_final(self) -> bool {
        self.rank() == 2
    }

    /// Went (or is going) out through FCM.
    pub fn is_fcm(self) -> bool {
        matches!(self, Status::FcmAccepted | Status::FcmFailed)
    }
}

/// The channel a delivery went through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum DeliveryChannel {
    Sse,
    /// A push provider (FCM).
    Fcm,
}

impl DeliveryChannel {
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryChannel::Sse => "sse",
            DeliveryChannel::Fcm => "fcm",
        }
    }
}

/// One channel's outcome for one device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub channel: DeliveryChannel,
    /// `None` for a stream opened without a `device_id`.
    pub device: Option<String>,
    pub status: Status,
    /// Why a push did not get through: the provider's answer (`unregistered`, …).
    pub error: Option<String>,
}

impl Delivery {
    /// A stream wrote the notification.
    pub fn sse(device: Option<&str>) -> Delivery {
        Delivery {
            channel: DeliveryChannel::Sse,
            device: device.map(str::to_string),
            status: Status::Delivered,
            error: None,
        }
    }

    /// A push to `device` ended: accepted, or failed with `error`.
    pub fn push(device: &str, error: Option<&str>) -> Delivery {
        Delivery {
            channel: DeliveryChannel::Fcm,
            device: Some(device.to_string()),
            status: match error {
                None => Status::FcmAccepted,
                Some(_) => Status::FcmFailed,
            },
            error: error.map(str::to_string),
        }
    }

    /// A push to `device` waits in the queue for another attempt; `error`: the last answer.
    pub fn retrying(device: &str, error: &str) -> Delivery {
        Delivery {
            channel: DeliveryChannel::Fcm,
            device: Some(device.to_string()),
            status: Status::FcmRetrying,
            error: Some(error.to_string()),
        }
    }

    /// The stored key, `<channel>:<device>` (`sse:phone`, `fcm:tablet`, `sse:` without a
    /// device): in Redis, a field of the record's hash. Nodes of every version read and write
    /// this form, so it does not change.
    pub fn field(&self) -> String {
        field(self.channel, self.device.as_deref().unwrap_or(""))
    }

    /// The stored value, `<status>[:<error>]` (`delivered`, `fcm_failed:unregistered`).
    pub fn value(&self) -> String {
        match &self.error {
            Some(e) => format!("{}:{e}", self.status.as_str()),
            None => self.status.as_str().to_string(),
        }
    }

    /// Reads the stored form back; `None` when `field` is not a delivery's.
    pub fn parse(field: &str, value: &str) -> Option<Delivery> {
        let (channel, device) = field.split_once(':')?;
        let channel = match channel {
            "sse" => DeliveryChannel::Sse,
            "fcm" => DeliveryChannel::Fcm,
            _ => return None,
        };
        let (status, error) = match value.split_once(':') {
            Some((s, e)) => (s, Some(e.to_string())),
            None => (value, None),
        };
        Some(Delivery {
            channel,
            device: (!device.is_empty()).then(|| device.to_string()),
            status: Status::parse(status)?,
            error,
        })
    }
}

/// The stored key of a delivery (see [`Delivery::field`]); `device` is empty for none.
pub fn field(channel: DeliveryChannel, device: &str) -> String {
    format!("{}:{device}", channel.as_str())
}

/// A record as both ledgers store it.
#[derive(Debug, Clone)]
pub struct RawRecord {
    pub id: String,
    pub user_id: String,
    pub created_at: u64,
    pub route: Option<Route>,
    pub status: Status,
    pub deliveries: Vec<Delivery>,
}

/// `GET /v1/notifications/{id}`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RecordView {
    pub id: String,
    pub user_id: String,
    pub route: Option<Route>,
    pub status: Status,
    pub created_at: u64,
    pub deliveries: Vec<DeliveryView>,
    /// Push attempts so far, over all of its devices, while some of its sends are in the
    /// durable push queue; absent otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub push_attempts: Option<u32>,
    /// When the next push attempt is due (unix ms), while one waits in the queue; absent
    /// otherwise (also while every queued send is under way).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_attempt_at: Option<u64>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct DeliveryView {
    pub device_id: Option<String>,
    pub channel: DeliveryChannel,
    pub status: Status,
    pub error: Option<String>,
}

impl RawRecord {
    pub fn view(self) -> RecordView {
        let acked = self.status == Status::Acked;
        let mut deliveries: Vec<DeliveryView> = self
            .deliveries
            .into_iter()
            .map(|d| DeliveryView {
                device_id: d.device,
                channel: d.channel,
                // An ack confirms what the user's streams wrote.
                status: if d.channel == DeliveryChannel::Sse && acked {
                    Status::Acked
                } else {
                    d.status
                },
                error: d.error,
            })
            .collect();
        deliveries.sort_by(|a, b| {
            (a.channel.as_str(), &a.device_id).cmp(&(b.channel.as_str(), &b.device_id))
        });
        RecordView {
            id: self.id,
            user_id: self.user_id,
            route: self.route,
            status: self.status,
            created_at: self.created_at,
            deliveries,
            push_attempts: None,
            next_attempt_at: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_only_move_up() {
        assert!(Status::Delivered.rank() > Status::Pending.rank());
        assert!(Status::Acked.is_final() && Status::Expired.is_final());
        assert_eq!(Status::parse("fcm_accepted"), Some(Status::FcmAccepted));
    }

    #[test]
    fn routes_are_the_metrics_and_api_labels() {
        let labels: Vec<&str> = Route::ALL.iter().map(|r| r.as_str()).collect();
        assert_eq!(labels, ["sse", "fcm", "none"]);
        assert!(Route::ALL
            .iter()
            .all(|r| Route::parse(r.as_str()) == Some(*r)));
        assert_eq!(serde_json::to_value(Route::None).unwrap(), "none");
    }

    #[test]
    fn deliveries_keep_their_stored_form() {
        let stored = [
            ("sse:phone", "delivered"),
            ("sse:", "delivered"),
            ("fcm:tab", "fcm_accepted"),
            ("fcm:tab", "fcm_failed:unregistered"),
        ];
        for (field, value) in stored {
            let d = Delivery::parse(field, value).unwrap();
            assert_eq!((d.field().as_str(), d.value().as_str()), (field, value));
        }
        assert_eq!(Delivery::sse(None).field(), "sse:");
        assert_eq!(
            Delivery::push("tab", Some("unregistered")).value(),
            "fcm_failed:unregistered"
        );
        assert_eq!(Delivery::parse("x:phone", "delivered"), None);
        assert_eq!(Delivery::parse("u", "alice"), None);
    }

    #[test]
    fn the_view_shows_acked_streams_and_sorts_by_channel() {
        let view = RawRecord {
            id: "n".into(),
            user_id: "u".into(),
            created_at: 1,
            route: Some(Route::Sse),
            status: Status::Acked,
            deliveries: vec![
                Delivery::sse(Some("phone")),
                Delivery::push("tab", Some("unregistered")),
            ],
        }
        .view();
        let json = serde_json::to_value(&view).unwrap();
        assert_eq!(
            json["deliveries"],
            serde_json::json!([
                {"device_id": "tab", "channel": "fcm", "status": "fcm_failed", "error": "unregistered"},
                {"device_id": "phone", "channel": "sse", "status": "acked", "error": null},
            ])
        );
        assert_eq!(json["route"], "sse");
    }
}

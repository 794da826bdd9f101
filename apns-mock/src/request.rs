//! What APNs checks in a notification request once the provider is authenticated: the device
//! token, the `apns-*` headers, the topic against the configured bundle ids, and the payload.

use axum::http::HeaderMap;
use serde::Serialize;
use serde_json::Value;

use crate::reason::Reason;

/// Apple's payload limit for every push type but VoIP.
pub const MAX_PAYLOAD_BYTES: usize = 4096;
/// Apple's payload limit for VoIP notifications.
pub const MAX_VOIP_PAYLOAD_BYTES: usize = 5120;
/// Apple's limit on `apns-collapse-id`.
pub const MAX_COLLAPSE_ID_BYTES: usize = 64;
/// Device tokens are hex; Apple warns their length may change, so a range is accepted.
const DEVICE_TOKEN_HEX_LEN: std::ops::RangeInclusive<usize> = 64..=200;

/// Headers that must appear at most once (`DuplicateHeaders` otherwise).
pub(crate) const SINGLE_HEADERS: [&str; 7] = [
    "authorization",
    "apns-id",
    "apns-topic",
    "apns-push-type",
    "apns-priority",
    "apns-expiration",
    "apns-collapse-id",
];

/// The values of `apns-push-type` Apple documents.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PushType {
    Alert,
    Background,
    Location,
    Voip,
    Complication,
    Fileprovider,
    Mdm,
    Liveactivity,
    Pushtotalk,
    Widgets,
    Controls,
}

impl PushType {
    const ALL: [PushType; 11] = [
        Self::Alert,
        Self::Background,
        Self::Location,
        Self::Voip,
        Self::Complication,
        Self::Fileprovider,
        Self::Mdm,
        Self::Liveactivity,
        Self::Pushtotalk,
        Self::Widgets,
        Self::Controls,
    ];

    fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == text)
    }

    /// The header value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Alert => "alert",
            Self::Background => "background",
            Self::Location => "location",
            Self::Voip => "voip",
            Self::Complication => "complication",
            Self::Fileprovider => "fileprovider",
            Self::Mdm => "mdm",
            Self::Liveactivity => "liveactivity",
            Self::Pushtotalk => "pushtotalk",
            Self::Widgets => "widgets",
            Self::Controls => "controls",
        }
    }

    /// What `apns-topic` must append to the bundle id for this push type; `None` for `mdm`,
    /// whose topic is the MDM certificate's UID, which the mock does not know.
    fn topic_suffix(self) -> Option<&'static str> {
        Some(match self {
            Self::Alert | Self::Background => "",
            Self::Location => ".location-query",
            Self::Voip => ".voip",
            Self::Complication => ".complication",
            Self::Fileprovider => ".pushkit.fileprovider",
            Self::Liveactivity => ".push-type.liveactivity",
            Self::Pushtotalk => ".voip-ptt",
            Self::Widgets => ".push-type.widgets",
            Self::Controls => ".push-type.controls",
            Self::Mdm => return None,
        })
    }
}

/// A request APNs would accept, as `GET /_mock/messages` shows its parts.
#[derive(Debug, Clone)]
pub(crate) struct Notification {
    pub topic: String,
    pub push_type: Option<PushType>,
    /// `apns-priority`, 10 when absent as Apple defaults it.
    pub priority: u8,
    pub expiration: Option<u64>,
    pub collapse_id: Option<String>,
    pub payload: Value,
}

/// The request's `apns-id` if it has one: a canonical UUID, any hex case, or `BadMessageId`.
pub(crate) fn apns_id(headers: &HeaderMap) -> Result<Option<String>, Reason> {
    let Some(value) = headers.get("apns-id") else {
        return Ok(None);
    };
    let text = value.to_str().map_err(|_| Reason::BadMessageId)?;
    let groups: Vec<&str> = text.split('-').collect();
    let lengths_match = groups.len() == 5
        && groups
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(group, len)| group.len() == len);
    if lengths_match && text.bytes().all(|b| b == b'-' || b.is_ascii_hexdigit()) {
        Ok(Some(text.to_owned()))
    } else {
        Err(Reason::BadMessageId)
    }
}

/// A random (version 4) UUID in canonical lowercase form, as APNs generates `apns-id`.
pub(crate) fn new_uuid() -> String {
    let mut bytes = [0u8; 16];
    rand::fill(&mut bytes);
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    )
}

/// `DuplicateHeaders` when a header APNs reads once is repeated.
pub(crate) fn check_duplicates(headers: &HeaderMap) -> Result<(), Reason> {
    if SINGLE_HEADERS
        .iter()
        .any(|name| headers.get_all(*name).iter().count() > 1)
    {
        return Err(Reason::DuplicateHeaders);
    }
    Ok(())
}

/// Checks everything after authentication, in the order listed in the crate docs.
pub(crate) fn validate(
    device_token: &str,
    headers: &HeaderMap,
    body: &[u8],
    bundle_ids: &[String],
) -> Result<Notification, Reason> {
    check_device_token(device_token)?;
    let push_type = match header(headers, "apns-push-type")? {
        None => None,
        Some(text) => Some(PushType::parse(text).ok_or(Reason::InvalidPushType)?),
    };
    let topic = check_topic(header(headers, "apns-topic")?, push_type, bundle_ids)?;
    let priority = match header(headers, "apns-priority")? {
        None => 10,
        Some(text) => match text.parse::<u8>() {
            Ok(priority @ (1 | 5 | 10)) => priority,
            _ => return Err(Reason::BadPriority),
        },
    };
    if push_type == Some(PushType::Background) && priority != 5 {
        return Err(Reason::BadPriority);
    }
    let expiration = header(headers, "apns-expiration")?
        .map(|text| text.parse::<u64>().map_err(|_| Reason::BadExpirationDate))
        .transpose()?;
    let collapse_id = header(headers, "apns-collapse-id")?.map(str::to_owned);
    if collapse_id
        .as_ref()
        .is_some_and(|id| id.len() > MAX_COLLAPSE_ID_BYTES)
    {
        return Err(Reason::BadCollapseId);
    }
    let payload = check_payload(body, push_type)?;
    Ok(Notification {
        topic,
        push_type,
        priority,
        expiration,
        collapse_id,
        payload,
    })
}

fn check_device_token(token: &str) -> Result<(), Reason> {
    if token.is_empty() {
        return Err(Reason::MissingDeviceToken);
    }
    let valid = DEVICE_TOKEN_HEX_LEN.contains(&token.len())
        && token.len().is_multiple_of(2)
        && token.bytes().all(|b| b.is_ascii_hexdigit());
    if valid {
        Ok(())
    } else {
        Err(Reason::BadDeviceToken)
    }
}

/// A header's value; an empty value counts as absent, and non-ASCII as malformed.
fn header<'h>(headers: &'h HeaderMap, name: &str) -> Result<Option<&'h str>, Reason> {
    let Some(value) = headers.get(name) else {
        return Ok(None);
    };
    let text = value.to_str().map_err(|_| match name {
        "apns-topic" => Reason::BadTopic,
        "apns-push-type" => Reason::InvalidPushType,
        "apns-priority" => Reason::BadPriority,
        "apns-expiration" => Reason::BadExpirationDate,
        _ => Reason::BadCollapseId,
    })?;
    Ok(Some(text.trim()).filter(|t| !t.is_empty()))
}

/// `MissingTopic` when absent, `BadTopic` when not bundle-id shaped, `TopicDisallowed` when it
/// is not one of the configured bundle ids with the suffix the push type requires.
fn check_topic(
    topic: Option<&str>,
    push_type: Option<PushType>,
    bundle_ids: &[String],
) -> Result<String, Reason> {
    let topic = topic.ok_or(Reason::MissingTopic)?;
    let well_formed = topic
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-');
    if !well_formed {
        return Err(Reason::BadTopic);
    }
    let allowed = match push_type.map(PushType::topic_suffix) {
        Some(None) => true,
        Some(Some(suffix)) => bundle_ids.iter().any(|id| topic == format!("{id}{suffix}")),
        None => bundle_ids.iter().any(|id| {
            topic
                .strip_prefix(id.as_str())
                .is_some_and(|rest| PushType::ALL.iter().any(|t| t.topic_suffix() == Some(rest)))
        }),
    };
    if allowed {
        Ok(topic.to_owned())
    } else {
        Err(Reason::TopicDisallowed)
    }
}

/// The payload must be a JSON dictionary within the push type's size limit. Apple lists no
/// reason for a body that is not a JSON dictionary; the mock answers `PayloadEmpty`, the only
/// payload reason of the 400 table.
fn check_payload(body: &[u8], push_type: Option<PushType>) -> Result<Value, Reason> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(Reason::PayloadEmpty);
    }
    let limit = if push_type == Some(PushType::Voip) {
        MAX_VOIP_PAYLOAD_BYTES
    } else {
        MAX_PAYLOAD_BYTES
    };
    if body.len() > limit {
        return Err(Reason::PayloadTooLarge);
    }
    match serde_json::from_slice(body) {
        Ok(payload @ Value::Object(_)) => Ok(payload),
        _ => Err(Reason::PayloadEmpty),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_ids_are_canonical_v4_uuids() {
        let id = new_uuid();
        let mut headers = HeaderMap::new();
        headers.insert("apns-id", id.parse().unwrap());
        assert_eq!(apns_id(&headers), Ok(Some(id.clone())));
        assert_eq!(&id[14..15], "4");
    }

    #[test]
    fn topics_follow_the_push_types_suffix() {
        let bundles = ["com.example.app".to_owned()];
        let check = |topic, push_type| check_topic(Some(topic), push_type, &bundles);
        assert!(check("com.example.app", Some(PushType::Alert)).is_ok());
        assert!(check("com.example.app.voip", Some(PushType::Voip)).is_ok());
        assert!(check("com.example.app.voip", None).is_ok());
        assert_eq!(
            check("com.example.app", Some(PushType::Voip)),
            Err(Reason::TopicDisallowed)
        );
        assert_eq!(
            check("com.example.other", None),
            Err(Reason::TopicDisallowed)
        );
        assert_eq!(check("com example", None), Err(Reason::BadTopic));
        assert!(check("anything.mdm-uid", Some(PushType::Mdm)).is_ok());
    }
}

//! Field tables of the FCM HTTP v1 JSON types (`google.firebase.fcm.v1.*`), which validation
//! walks. Each field is accepted under its proto name (snake_case) and its JSON name (lowerCamelCase),
//! as Google's JSON front end accepts both.

/// The JSON type a field must hold.
pub(crate) enum Kind {
    String,
    Bool,
    /// int32; a number or a string holding one.
    Int,
    /// float; a number.
    Float,
    /// `google.protobuf.Duration`: `"3.5s"`.
    Duration,
    /// `google.protobuf.Timestamp`: RFC 3339.
    Timestamp,
    /// An enum (proto type name, value names); matched without regard to case.
    Enum(&'static str, &'static [&'static str]),
    /// `map<string, string>`.
    StringMap,
    /// `google.protobuf.Struct`: any JSON object.
    Struct,
    /// A repeated field of the inner kind.
    List(&'static Kind),
    /// A nested message (proto type name, fields).
    Message(&'static str, &'static [Field]),
}

/// One field of a message type.
pub(crate) struct Field {
    /// Proto name (snake_case); also used in error paths, as Google does.
    pub name: &'static str,
    /// JSON name (lowerCamelCase).
    pub json: &'static str,
    pub kind: Kind,
    /// Name of the `oneof` the field belongs to; at most one field of it may be set.
    pub oneof: Option<&'static str>,
}

const fn f(name: &'static str, json: &'static str, kind: Kind) -> Field {
    Field {
        name,
        json,
        kind,
        oneof: None,
    }
}

const fn target(name: &'static str) -> Field {
    Field {
        name,
        json: name,
        kind: Kind::String,
        oneof: Some("target"),
    }
}

const FCM: &str = "type.googleapis.com/google.firebase.fcm.v1.";

/// The body of `messages:send`.
pub(crate) const SEND_REQUEST: &[Field] = &[
    f("message", "message", Kind::Message("Message", MESSAGE)),
    f("validate_only", "validateOnly", Kind::Bool),
];

/// `google.firebase.fcm.v1.Message`.
pub(crate) const MESSAGE: &[Field] = &[
    f("name", "name", Kind::String),
    f("data", "data", Kind::StringMap),
    f(
        "notification",
        "notification",
        Kind::Message("Notification", NOTIFICATION),
    ),
    f(
        "android",
        "android",
        Kind::Message("AndroidConfig", ANDROID),
    ),
    f(
        "webpush",
        "webpush",
        Kind::Message("WebpushConfig", WEBPUSH),
    ),
    f("apns", "apns", Kind::Message("ApnsConfig", APNS)),
    f(
        "fcm_options",
        "fcmOptions",
        Kind::Message("FcmOptions", FCM_OPTIONS),
    ),
    target("token"),
    target("topic"),
    target("condition"),
    target("fid"),
];

const NOTIFICATION: &[Field] = &[
    f("title", "title", Kind::String),
    f("body", "body", Kind::String),
    f("image", "image", Kind::String),
];

const FCM_OPTIONS: &[Field] = &[f("analytics_label", "analyticsLabel", Kind::String)];

const ANDROID: &[Field] = &[
    f("collapse_key", "collapseKey", Kind::String),
    f(
        "priority",
        "priority",
        Kind::Enum("AndroidMessagePriority", &["NORMAL", "HIGH"]),
    ),
    f("ttl", "ttl", Kind::Duration),
    f(
        "restricted_package_name",
        "restrictedPackageName",
        Kind::String,
    ),
    f("data", "data", Kind::StringMap),
    f(
        "notification",
        "notification",
        Kind::Message("AndroidNotification", ANDROID_NOTIFICATION),
    ),
    f(
        "fcm_options",
        "fcmOptions",
        Kind::Message("AndroidFcmOptions", FCM_OPTIONS),
    ),
    f("direct_boot_ok", "directBootOk", Kind::Bool),
    f(
        "bandwidth_constrained_ok",
        "bandwidthConstrainedOk",
        Kind::Bool,
    ),
    f(
        "restricted_satellite_ok",
        "restrictedSatelliteOk",
        Kind::Bool,
    ),
];

const ANDROID_NOTIFICATION: &[Field] = &[
    f("title", "title", Kind::String),
    f("body", "body", Kind::String),
    f("icon", "icon", Kind::String),
    f("color", "color", Kind::String),
    f("sound", "sound", Kind::String),
    f("tag", "tag", Kind::String),
    f("click_action", "clickAction", Kind::String),
    f("body_loc_key", "bodyLocKey", Kind::String),
    f("body_loc_args", "bodyLocArgs", Kind::List(&Kind::String)),
    f("title_loc_key", "titleLocKey", Kind::String),
    f("title_loc_args", "titleLocArgs", Kind::List(&Kind::String)),
    f("channel_id", "channelId", Kind::String),
    f("ticker", "ticker", Kind::String),
    f("sticky", "sticky", Kind::Bool),
    f("event_time", "eventTime", Kind::Timestamp),
    f("local_only", "localOnly", Kind::Bool),
    f(
        "notification_priority",
        "notificationPriority",
        Kind::Enum(
            "NotificationPriority",
            &[
                "PRIORITY_UNSPECIFIED",
                "PRIORITY_MIN",
                "PRIORITY_LOW",
                "PRIORITY_DEFAULT",
                "PRIORITY_HIGH",
                "PRIORITY_MAX",
            ],
        ),
    ),
    f("default_sound", "defaultSound", Kind::Bool),
    f(
        "default_vibrate_timings",
        "defaultVibrateTimings",
        Kind::Bool,
    ),
    f("default_light_settings", "defaultLightSettings", Kind::Bool),
    f(
        "vibrate_timings",
        "vibrateTimings",
        Kind::List(&Kind::Duration),
    ),
    f(
        "visibility",
        "visibility",
        Kind::Enum(
            "AndroidNotification.Visibility",
            &["VISIBILITY_UNSPECIFIED", "PRIVATE", "PUBLIC", "SECRET"],
        ),
    ),
    f("notification_count", "notificationCount", Kind::Int),
    f(
        "light_settings",
        "lightSettings",
        Kind::Message("LightSettings", LIGHT_SETTINGS),
    ),
    f("image", "image", Kind::String),
    f(
        "bypass_proxy_notification",
        "bypassProxyNotification",
        Kind::Bool,
    ),
    f(
        "proxy",
        "proxy",
        Kind::Enum(
            "AndroidNotification.Proxy",
            &["PROXY_UNSPECIFIED", "ALLOW", "DENY", "IF_PRIORITY_LOWERED"],
        ),
    ),
];

const LIGHT_SETTINGS: &[Field] = &[
    f("color", "color", Kind::Message("google.type.Color", COLOR)),
    f("light_on_duration", "lightOnDuration", Kind::Duration),
    f("light_off_duration", "lightOffDuration", Kind::Duration),
];

const COLOR: &[Field] = &[
    f("red", "red", Kind::Float),
    f("green", "green", Kind::Float),
    f("blue", "blue", Kind::Float),
    f("alpha", "alpha", Kind::Float),
];

const WEBPUSH: &[Field] = &[
    f("headers", "headers", Kind::StringMap),
    f("data", "data", Kind::StringMap),
    f("notification", "notification", Kind::Struct),
    f(
        "fcm_options",
        "fcmOptions",
        Kind::Message("WebpushFcmOptions", WEBPUSH_FCM_OPTIONS),
    ),
];

const WEBPUSH_FCM_OPTIONS: &[Field] = &[
    f("link", "link", Kind::String),
    f("analytics_label", "analyticsLabel", Kind::String),
];

const APNS: &[Field] = &[
    f("headers", "headers", Kind::StringMap),
    f("payload", "payload", Kind::Struct),
    f(
        "fcm_options",
        "fcmOptions",
        Kind::Message("ApnsFcmOptions", APNS_FCM_OPTIONS),
    ),
    f("live_activity_token", "liveActivityToken", Kind::String),
];

const APNS_FCM_OPTIONS: &[Field] = &[
    f("analytics_label", "analyticsLabel", Kind::String),
    f("image", "image", Kind::String),
];

/// The type name Google prints in "Invalid value at 'path' (TYPE), value" messages.
pub(crate) fn type_label(kind: &Kind) -> String {
    match kind {
        Kind::String | Kind::StringMap => "TYPE_STRING".to_owned(),
        Kind::Bool => "TYPE_BOOL".to_owned(),
        Kind::Int => "TYPE_INT32".to_owned(),
        Kind::Float => "TYPE_FLOAT".to_owned(),
        Kind::Duration => "type.googleapis.com/google.protobuf.Duration".to_owned(),
        Kind::Timestamp => "type.googleapis.com/google.protobuf.Timestamp".to_owned(),
        Kind::Struct => "type.googleapis.com/google.protobuf.Struct".to_owned(),
        Kind::List(inner) => type_label(inner),
        Kind::Enum(name, _) | Kind::Message(name, _) if name.starts_with("google.") => {
            format!("type.googleapis.com/{name}")
        }
        Kind::Enum(name, _) | Kind::Message(name, _) => format!("{FCM}{name}"),
    }
}

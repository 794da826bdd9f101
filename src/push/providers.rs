//! The providers this instance sends through, one per (app, provider kind): a device is sent to
//! only with its own app's credentials, and a device whose app has no provider of its kind is
//! not reachable by push.

use std::collections::HashMap;
use std::sync::Arc;

use super::Provider;
use crate::ids::AppId;
use crate::store::{Device, ProviderKind};

/// `None` is the default app (the top-level `[fcm]`, `[apns]`, `[webpush]` sections).
type Key = (Option<AppId>, ProviderKind);

#[derive(Default, Clone)]
pub struct Providers {
    by_app: HashMap<Key, Arc<dyn Provider>>,
}

impl Providers {
    /// Adds (or replaces) the provider of `kind` for `app`.
    pub fn add(&mut self, app: Option<AppId>, kind: ProviderKind, provider: Arc<dyn Provider>) {
        self.by_app.insert((app, kind), provider);
    }

    /// The provider that reaches `device`, with its app's credentials.
    pub fn for_device(&self, device: &Device) -> Option<&Arc<dyn Provider>> {
        self.by_app.get(&(device.app.clone(), device.provider))
    }

    pub fn is_empty(&self) -> bool {
        self.by_app.is_empty()
    }

    /// What is configured, for the log at start: `fcm`, `apns@shop`, ….
    pub fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .by_app
            .keys()
            .map(|(app, kind)| match app {
                Some(app) => format!("{}@{app}", kind.as_str()),
                None => kind.as_str().to_string(),
            })
            .collect();
        names.sort();
        names
    }
}

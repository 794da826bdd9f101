//! The inbox in the store's database, for one node (the rows in `store::inbox`). One node
//! writes it, so the node's own writes are all the changes there are. Its rows go through the
//! store's writer, the push queue's too, in call order (`store::writer`).

use futures::future::FutureExt;

use super::{InboxEngine, InboxError, InboxFuture, Kept};
use crate::ids::{NotificationId, UserId};
use crate::store::{InboxRow, Store, Write};

pub struct SqlInbox {
    store: Store,
    max_per_user: usize,
}

impl SqlInbox {
    pub fn new(store: Store, max_per_user: usize) -> SqlInbox {
        SqlInbox {
            store,
            max_per_user,
        }
    }
}

fn failed(e: impl std::fmt::Display) -> InboxError {
    InboxError(e.to_string())
}

impl InboxEngine for SqlInbox {
    fn append(&self, rows: Vec<InboxRow>, _since: String, lazy: bool) -> InboxFuture<()> {
        // Retention is the expiry sweep's job here; reads filter by it meanwhile.
        let written = self.store.write(Write::Keep {
            rows,
            max_per_user: self.max_per_user,
            lazy,
        });
        async move { written.await.map(|_| ()).map_err(failed) }.boxed()
    }

    fn keep(&self, rows: Vec<InboxRow>, _since: String, then: Kept) {
        let keep = Write::Keep {
            rows,
            max_per_user: self.max_per_user,
            lazy: true,
        };
        self.store
            .write_then(keep, Box::new(move |r| then(r.map(|_| ()).map_err(failed))));
    }

    fn shares_push_writer(&self) -> bool {
        true
    }

    fn page(
        &self,
        user: &UserId,
        after: Option<&str>,
        since: &str,
        limit: usize,
    ) -> InboxFuture<Vec<(String, String)>> {
        let store = self.store.clone();
        let (user, after, since) = (
            user.to_string(),
            after.map(str::to_string),
            since.to_string(),
        );
        async move {
            store
                .inbox_page(&user, after.as_deref(), &since, limit)
                .await
                .map_err(failed)
        }
        .boxed()
    }

    fn get(&self, user: &UserId, id: &NotificationId, since: &str) -> InboxFuture<Option<String>> {
        let store = self.store.clone();
        let (user, id, since) = (user.to_string(), id.to_string(), since.to_string());
        async move { store.inbox_get(&user, &id, &since).await.map_err(failed) }.boxed()
    }

    fn head(&self, user: &UserId) -> InboxFuture<Option<String>> {
        let store = self.store.clone();
        let user = user.to_string();
        async move { store.inbox_head(&user).await.map_err(failed) }.boxed()
    }

    fn expire(&self, since: String) -> InboxFuture<u64> {
        let store = self.store.clone();
        async move { store.inbox_expire(&since).await.map_err(failed) }.boxed()
    }
}

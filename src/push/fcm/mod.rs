//! Firebase Cloud Messaging HTTP v1: the request body (`message.rs`), the meaning of each answer
//! (`answer.rs`), and the [`FcmProvider`] that sends one message with an OAuth token
//! (`client.rs`).

mod answer;
mod client;
mod message;

pub use answer::RequestResult;
pub use client::{FcmProvider, FcmSetupError};
pub use message::send_body;

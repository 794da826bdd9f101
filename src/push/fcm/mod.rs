mod answer;
pub mod client;
mod message;

pub mod fcm;
pub mod sender;

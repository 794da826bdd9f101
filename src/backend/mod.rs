pub mod broker;
pub mod ledger;
pub mod memory;
pub mod redis;

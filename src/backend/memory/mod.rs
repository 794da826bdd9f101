pub mod broker;
pub mod ledger;

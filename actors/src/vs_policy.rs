//! Pure decisions for virtual servers, each over the small part of the
//! state it reads: where instances go and which ones leave, how many a load
//! needs ([`plan`]); what agents are told about instances and when it is
//! told again ([`instance`]); what events and tasks are delivered, when,
//! and how their outcomes are recorded ([`trigger`]). The VS actor only
//! carries them out.

pub mod instance;
pub mod plan;
pub mod trigger;

pub use instance::*;
pub use plan::*;
pub use trigger::*;

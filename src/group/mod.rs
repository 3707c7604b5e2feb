//! Consumer groups: the coordinator that keeps members and generations,
//! the assignors, and group administration on the [`Log`](crate::Log).

pub(crate) mod admin;
pub(crate) mod assignor;
pub(crate) mod coordinator;

pub use admin::{GroupDescription, OffsetSpec, PartitionLag};
pub use assignor::{Assignment, AssignmentStrategy, MemberSubscription, assign};
pub use coordinator::{GroupState, MemberDescription};

//! Overnight generation: stock policies, generation windows, the consumption forecast, and the
//! planner that turns them into jobs. Pure (no tokio, no sled): the runner at the leader
//! (`node::schedule`) feeds it the store's stock and jobs and applies its decisions.

pub mod clock;
pub mod forecast;
pub mod plan;
pub mod policy;
pub mod window;

pub use clock::Clock;
pub use forecast::Rate;
pub use plan::{plan, retry_after, Action, Decision, PoolInput};
pub use policy::{Level, Levels, StockPolicy};
pub use window::{Overlap, Window, WindowState, Windows};

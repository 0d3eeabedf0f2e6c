//! Test-only helpers shared by the single-actor tests: a [`ChildReport`] collector that stands
//! in for the AccountActor and forwards every report to a channel the test reads.

use crate::report::{ChildReport, Reporter};
use ractor::{Actor, ActorProcessingErr, ActorRef};
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};

struct Collector;

impl Actor for Collector {
    type Msg = ChildReport;
    type State = UnboundedSender<ChildReport>;
    type Arguments = UnboundedSender<ChildReport>;

    async fn pre_start(
        &self,
        _: ActorRef<ChildReport>,
        tx: UnboundedSender<ChildReport>,
    ) -> Result<Self::State, ActorProcessingErr> {
        Ok(tx)
    }

    async fn handle(
        &self,
        _: ActorRef<ChildReport>,
        msg: ChildReport,
        tx: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        let _ = tx.send(msg);
        Ok(())
    }
}

/// A reporter whose reports arrive on the returned channel.
pub async fn reporter() -> (Reporter, UnboundedReceiver<ChildReport>) {
    let (tx, rx) = unbounded_channel();
    let (actor, _) = Actor::spawn(None, Collector, tx)
        .await
        .expect("spawn the report collector");
    (actor.get_derived(), rx)
}

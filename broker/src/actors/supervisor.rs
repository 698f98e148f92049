//! A root supervisor per actor kind: it owns no work, it only watches its children.

use ractor::{Actor, ActorProcessingErr, ActorRef, SupervisionEvent};

pub struct Supervisor;

impl Actor for Supervisor {
    type Msg = ();
    type State = &'static str;
    type Arguments = &'static str;

    async fn pre_start(
        &self,
        _myself: ActorRef<()>,
        kind: &'static str,
    ) -> Result<&'static str, ActorProcessingErr> {
        Ok(kind)
    }

    async fn handle_supervisor_evt(
        &self,
        _myself: ActorRef<()>,
        event: SupervisionEvent,
        kind: &mut &'static str,
    ) -> Result<(), ActorProcessingErr> {
        match event {
            SupervisionEvent::ActorFailed(actor, error) => {
                tracing::error!(kind = *kind, actor = %actor.get_id(), %error, "actor failed");
            }
            SupervisionEvent::ActorTerminated(actor, _, reason) => {
                tracing::debug!(kind = *kind, actor = %actor.get_id(), reason = ?reason, "actor stopped");
            }
            _ => {}
        }
        Ok(())
    }
}

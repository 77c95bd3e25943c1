//! Machine: read the BMC's power state, set `status.powerState` and the `Contactable`
//! condition, and come back after the power check interval. Writes only when something
//! changed, so a steady Machine costs one BMC session per interval and no store writes.

use std::sync::Arc;

use tinkerbell_core::model::bmc::{
    MachineCondition, condition_status, machine_condition_type, power_state,
};
use tinkerbell_core::store::{Object, ObjectKey};

use super::bmcs::{self, Target};
use super::{ControllerError, Ctx, Requeue, now, status};
use crate::action::{ActionOutcome, Step};

pub(crate) async fn reconcile(
    ctx: &Ctx,
    key: &ObjectKey,
    cached: Option<Object>,
) -> Result<Requeue, ControllerError> {
    let Some(Object::Machine(m)) = cached else {
        return Ok(None);
    };
    if m.metadata.deletion_timestamp.is_some() {
        return Ok(None);
    }
    let observed: Result<&'static str, String> = match &m.spec.connection {
        None => Err("the Machine has no connection".into()),
        Some(conn) => match Target::resolve(ctx.store.as_ref(), conn, &key.namespace).await {
            Err(msg) => Err(msg),
            Ok(target) => match ctx.bmcs.run(&target, &Step::PowerStatus).await {
                Ok(ActionOutcome::PowerState(s)) => Ok(s.as_str()),
                Ok(_) => Ok(power_state::UNKNOWN),
                Err(e) => Err(bmcs::message(&e)),
            },
        },
    };
    let (power, contactable, message) = match &observed {
        Ok(p) => (*p, condition_status::TRUE, None),
        Err(msg) => {
            tracing::info!(machine = %key, error = %msg, "BMC not contactable");
            (
                power_state::UNKNOWN,
                condition_status::FALSE,
                Some(msg.clone()),
            )
        }
    };
    status::update(ctx.store.as_ref(), key, |cur| {
        let Object::Machine(cur) = cur else {
            return None;
        };
        let mut m = status::edit(cur);
        let st = m.status.get_or_insert_with(Default::default);
        let conds = st.conditions.get_or_insert_with(Vec::new);
        let existing = conds
            .iter()
            .position(|c| c.type_.as_deref() == Some(machine_condition_type::CONTACTABLE));
        let same_condition = existing.is_some_and(|i| {
            conds[i].status.as_deref() == Some(contactable) && conds[i].message == message
        });
        if same_condition && st.power_state.as_deref() == Some(power) {
            return None;
        }
        st.power_state = Some(power.to_string());
        if !same_condition {
            let c = MachineCondition {
                type_: Some(machine_condition_type::CONTACTABLE.into()),
                status: Some(contactable.into()),
                last_update_time: Some(now()),
                message: message.clone(),
            };
            match existing {
                Some(i) => conds[i] = c,
                None => conds.push(c),
            }
        }
        Some(Object::Machine(Arc::new(m)))
    })
    .await?;
    Ok(Some(ctx.config.power_check_interval))
}

//! Routine definitions: replicated like knowledge, named uniquely so that
//! operators can use the name wherever an id is asked for.

use osmoda_docs::{Action, NewRoutine as DocRoutine, Target};

use super::{Caller, Node};
use crate::api::{Created, Done, NewRoutine, RoutineView};
use crate::error::{NodeError, NodeResult};

impl Node {
    pub async fn routine_add(&self, by: Caller<'_>, new: NewRoutine) -> NodeResult<Created> {
        let name = new.name.clone();
        let result = self.make_routine(by, new).await;
        let target = match &result {
            Ok(id) => format!("{id} {name}"),
            Err(_) => name,
        };
        let id = self.audited(by, "routine.add", &target, "", result).await?;
        Ok(Created { id })
    }

    async fn make_routine(&self, by: Caller<'_>, new: NewRoutine) -> NodeResult<String> {
        let target = Target::parse(&new.target).map_err(|e| NodeError::Invalid(e.to_string()))?;
        let routine = DocRoutine {
            id: String::new(),
            name: new.name,
            schedule: new.schedule,
            target,
            action: Action {
                command: new.command,
                args: new.args,
                timeout_secs: new.timeout_secs,
            },
            enabled: new.enabled,
            created_by: by.actor_text(),
        };
        self.docs.add_routine(routine).await
    }

    pub fn routine_list(&self) -> Vec<RoutineView> {
        self.docs.routines()
    }

    /// A routine by id, or by its (unique) name.
    pub fn routine_show(&self, id_or_name: &str) -> NodeResult<RoutineView> {
        self.docs.find_routine(id_or_name)
    }

    pub async fn routine_remove(&self, by: Caller<'_>, id_or_name: &str) -> NodeResult<Done> {
        let result = match self.routine_show(id_or_name) {
            Ok(r) => self.docs.remove_routine(&r.id).await.map(|()| r.id),
            Err(e) => Err(e),
        };
        let target = result.as_deref().unwrap_or(id_or_name).to_owned();
        self.audited(by, "routine.remove", &target, "", result)
            .await?;
        Ok(Done::OK)
    }

    pub async fn routine_set_enabled(
        &self,
        by: Caller<'_>,
        id_or_name: &str,
        enabled: bool,
    ) -> NodeResult<Done> {
        let result = match self.routine_show(id_or_name) {
            Ok(r) => self.docs.set_routine(&r.id, enabled).await.map(|()| r.id),
            Err(e) => Err(e),
        };
        let target = result.as_deref().unwrap_or(id_or_name).to_owned();
        let action = if enabled {
            "routine.enable"
        } else {
            "routine.disable"
        };
        self.audited(by, action, &target, "", result).await?;
        Ok(Done::OK)
    }
}

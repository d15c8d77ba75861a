//! Steps of a build: numbered 0, 1, 2… within the build, each finishing with a result.

use sqlx::Row;

use super::error::Context;
use super::queries::select;
use super::{now, Store, StoreError};
use crate::engine::DbRow;
use crate::events::Event;
use crate::model::Step;

impl Store {
    /// Adds step `name` to build `buildid` with the next number in the build; returns its id and number.
    pub async fn add_step(&self, buildid: i64, name: &str) -> Result<(i64, i64), StoreError> {
        self.start_step(buildid, name, "").await
    }

    /// [`Store::add_step`], the step saying `state_string` from the start (`running`).
    pub async fn start_step(&self, buildid: i64, name: &str, state_string: &str) -> Result<(i64, i64), StoreError> {
        let op = || format!("add step {name:?} to build {buildid}");
        let mut tx = self.write(op).await?;
        // The write lock is held, so MAX + 1 cannot race (UNIQUE (buildid, number) backs this up).
        let row: (i64, i64) = sqlx::query_as(
            "INSERT INTO steps (number, name, buildid, started_at, state_string) \
             SELECT COALESCE(MAX(number) + 1, 0), ?, ?, ?, ? FROM steps WHERE buildid = ? \
             RETURNING id, number",
        )
        .bind(name)
        .bind(buildid)
        .bind(now())
        .bind(state_string)
        .bind(buildid)
        .fetch_one(&mut *tx)
        .await
        .context(op)?;
        tx.commit().await.context(op)?;
        let (stepid, number) = row;
        self.publish(Event::StepStarted { stepid, buildid, number });
        Ok(row)
    }

    /// Sets what step `stepid` is doing, as shown with it (`waiting for locks`). Setting the same string again
    /// changes nothing and tells no one.
    pub async fn set_step_state(&self, stepid: i64, state: &str) -> Result<(), StoreError> {
        let buildid: Option<i64> = sqlx::query_scalar(
            "UPDATE steps SET state_string = ? WHERE id = ? AND state_string != ? RETURNING buildid",
        )
        .bind(state)
        .bind(stepid)
        .bind(state)
        .fetch_optional(&self.pool)
        .await
        .context(|| format!("set the state of step {stepid}"))?;
        if let Some(buildid) = buildid {
            self.publish(Event::StepUpdated { stepid, buildid, state_string: state.to_string() });
        }
        Ok(())
    }

    /// Finishes step `stepid` with `results`, keeping its state string; `hidden` hides it from the web view
    /// (Buildbot's `hideStepIf`).
    pub async fn finish_step(&self, stepid: i64, results: i32, hidden: bool) -> Result<(), StoreError> {
        self.finish_step_as(stepid, results, hidden, None).await
    }

    /// [`Store::finish_step`] with, if given, the step's final state string (`'make -j4' (failure)`), in one
    /// write.
    pub async fn finish_step_as(
        &self,
        stepid: i64,
        results: i32,
        hidden: bool,
        state_string: Option<&str>,
    ) -> Result<(), StoreError> {
        let finished: Option<(i64, String)> = sqlx::query_as(
            "UPDATE steps SET complete_at = ?, results = ?, hidden = ?, state_string = COALESCE(?, state_string) \
             WHERE id = ? AND complete_at IS NULL RETURNING buildid, state_string",
        )
        .bind(now())
        .bind(results)
        .bind(i16::from(hidden))
        .bind(state_string)
        .bind(stepid)
        .fetch_optional(&self.pool)
        .await
        .context(|| format!("finish step {stepid}"))?;
        let Some((buildid, state_string)) = finished else {
            return Err(StoreError::NotFound { what: "running step", id: stepid });
        };
        self.publish(Event::StepFinished { stepid, buildid, results, state_string });
        Ok(())
    }

    /// The steps of build `buildid`, in order.
    pub async fn steps(&self, buildid: i64) -> Result<Vec<Step>, StoreError> {
        let op = || format!("get steps of build {buildid}");
        let rows = sqlx::query(select::<Step>("WHERE buildid = ? ORDER BY number"))
            .bind(buildid)
            .fetch_all(&self.pool)
            .await
            .context(op)?;
        rows.iter().map(step).collect::<Result<_, sqlx::Error>>().context(op)
    }
}

pub(super) fn step(r: &DbRow) -> Result<Step, sqlx::Error> {
    Ok(Step {
        id: r.try_get("id")?,
        number: r.try_get("number")?,
        name: r.try_get("name")?,
        buildid: r.try_get("buildid")?,
        started_at: r.try_get("started_at")?,
        complete_at: r.try_get("complete_at")?,
        state_string: r.try_get("state_string")?,
        results: r.try_get("results")?,
        hidden: r.try_get::<i16, _>("hidden")? != 0,
    })
}

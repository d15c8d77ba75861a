//! The master as a running build sees it ([`MasterHandle`]): what the `trigger` step asks of it.

use futures_util::future::BoxFuture;
use futures_util::FutureExt;
use tokio_util::sync::CancellationToken;

use super::Master;
use crate::build::{HandleError, MasterHandle};
use crate::model::{NewBuildset, Submitted};

impl MasterHandle for Master {
    fn trigger<'a>(
        &'a self,
        scheduler: &'a str,
        buildset: NewBuildset,
    ) -> BoxFuture<'a, Result<Submitted, HandleError>> {
        async move { Ok(Master::trigger(self, scheduler, buildset).await?) }.boxed()
    }

    fn cancel_request(&self, brid: i64) -> BoxFuture<'_, Result<(), HandleError>> {
        async move { Ok(Master::cancel_request(self, brid).await?) }.boxed()
    }

    fn stopping(&self) -> &CancellationToken {
        Master::stopping(self)
    }

    fn builder_name(&self, builderid: i64) -> Option<String> {
        self.inner.builders().iter().find(|(_, (id, _))| *id == builderid).map(|(name, _)| name.clone())
    }

    fn url(&self) -> String {
        self.config().url.clone()
    }
}

//! The broker's methods for reconciliation against provider invoices
//! (`usecase/reconcile.rs`), apart from the request path's.

use super::Broker;
use crate::error::BrokerError;
use crate::usecase::reconcile::{self, ReconcileError, Report, ReportSummary, Upload};

impl Broker {
    /// Compares a provider's usage export with our records; keeps the report.
    pub async fn reconcile(&self, upload: Upload) -> Result<Report, ReconcileError> {
        reconcile::run(&self.services, upload).await
    }

    /// The kept reconciliation reports, newest first, without their cells.
    pub async fn reconciliations(&self) -> Result<Vec<ReportSummary>, BrokerError> {
        reconcile::list(&self.services).await
    }

    /// One kept reconciliation report.
    pub async fn reconciliation(&self, id: &str) -> Result<Report, BrokerError> {
        reconcile::get(&self.services, id).await
    }
}

//! The broker's methods for saved dashboards and the grouped series their
//! panels draw (`usecase/dashboards.rs`, `usecase/grouped.rs`).

use oneflow::analytics::GroupBy;
use oneflow::dashboard::Dashboard;

use super::Broker;
use crate::error::BrokerError;
use crate::usecase::analytics::Range;
use crate::usecase::dashboards::{self, DashboardView, PanelData};
use crate::usecase::grouped::{self, GroupedSeries};

impl Broker {
    /// A series of `user_id` (or everyone's) split by `by`.
    pub async fn analytics_groups(
        &self,
        user_id: Option<&str>,
        by: GroupBy,
        range: Range,
    ) -> Result<GroupedSeries, BrokerError> {
        grouped::series(&self.services, user_id, by, range).await
    }

    /// Every dashboard of `owner` (a user's or a team's id).
    pub async fn dashboards(&self, owner: &str) -> Result<Vec<DashboardView>, BrokerError> {
        dashboards::list(&self.services, owner).await
    }

    /// One dashboard of `owner`.
    pub async fn dashboard(&self, owner: &str, name: &str) -> Result<DashboardView, BrokerError> {
        dashboards::get(&self.services, owner, name).await
    }

    /// Creates or replaces a dashboard; true if it is new.
    pub async fn put_dashboard(
        &self,
        owner: &str,
        name: &str,
        dashboard: Dashboard,
    ) -> Result<(bool, DashboardView), BrokerError> {
        dashboards::put(&self.services, owner, name, dashboard).await
    }

    /// Deletes a dashboard.
    pub async fn delete_dashboard(&self, owner: &str, name: &str) -> Result<(), BrokerError> {
        dashboards::delete(&self.services, owner, name).await
    }

    /// What panel `index` of a dashboard draws, now.
    pub async fn dashboard_panel(
        &self,
        owner: &str,
        name: &str,
        index: usize,
    ) -> Result<PanelData, BrokerError> {
        dashboards::panel(&self.services, owner, name, index).await
    }
}

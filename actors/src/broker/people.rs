//! The broker's methods for people's accounts and what is sent to them:
//! sign-in, webhooks and e-mailed reports (issue 14's surface), kept apart
//! from the request path's so that each file stays readable.

use oneflow::webhook::{DeliveryView, WebhookSpec, WebhookView, WebhookWithSecret};

use super::Broker;
use crate::error::BrokerError;
use crate::store::User;
use crate::usecase::accounts::{self, CreatedInvitation, TokenPair};
use crate::usecase::keys::Principal;
use crate::usecase::reports::SentReport;
use crate::usecase::{teams, webhooks};
use crate::views::{CreatedKey, Page, TeamView, WalletView};
use oneflow::access::Role;
use oneflow::budget::BudgetConfig;
use oneflow::records::RequestRecord;

impl Broker {
    // Accounts (`usecase/accounts.rs`).

    /// Registers an account (open, or with an invitation).
    pub async fn register(
        &self,
        name: String,
        email: String,
        password: String,
        invitation: Option<String>,
    ) -> Result<User, BrokerError> {
        accounts::register(&self.services, name, email, password, invitation).await
    }

    /// Makes a one-time invitation to register (admins).
    pub async fn invite(
        &self,
        caller: &Principal,
        email: Option<String>,
        expires_in_hours: Option<u32>,
    ) -> Result<CreatedInvitation, BrokerError> {
        accounts::invite(&self.services, caller, email, expires_in_hours, None).await
    }

    /// Makes a one-time invitation into team `id` with `role` (its team
    /// admins, and admins): the account registered with it joins the team.
    pub async fn invite_to_team(
        &self,
        caller: &Principal,
        id: &str,
        role: Role,
        email: Option<String>,
        expires_in_hours: Option<u32>,
    ) -> Result<CreatedInvitation, BrokerError> {
        teams::may_invite(&self.services, caller, id, role).await?;
        let seat = accounts::Seat {
            team: id.to_string(),
            role,
        };
        accounts::invite(&self.services, caller, email, expires_in_hours, Some(seat)).await
    }

    /// Signs in with an e-mail address and a password.
    pub async fn login(&self, email: String, password: String) -> Result<TokenPair, BrokerError> {
        accounts::login(&self.services, email, password).await
    }

    /// Exchanges a refresh token for a new pair, once.
    pub async fn refresh(&self, refresh_token: String) -> Result<TokenPair, BrokerError> {
        accounts::refresh(&self.services, refresh_token).await
    }

    /// Signs out: revokes the refresh token's family.
    pub async fn logout(&self, refresh_token: String) -> Result<(), BrokerError> {
        accounts::logout(&self.services, refresh_token).await
    }

    /// The principal behind an access token (a JWT), if it is good.
    pub async fn authenticate_token(&self, token: &str) -> Result<Option<Principal>, BrokerError> {
        accounts::authenticate(&self.services, token).await
    }

    // Webhooks (`usecase/webhooks/`).

    /// A webhook for `user_id`; its secret is shown in this answer only.
    pub async fn create_webhook(
        &self,
        user_id: &str,
        spec: WebhookSpec,
    ) -> Result<WebhookWithSecret, BrokerError> {
        webhooks::create(&self.services, user_id, spec).await
    }

    /// A user's webhooks, or everyone's with `None`.
    pub async fn webhooks(&self, user_id: Option<&str>) -> Result<Vec<WebhookView>, BrokerError> {
        webhooks::list(&self.services, user_id).await
    }

    pub async fn webhook(&self, who: &Principal, id: &str) -> Result<WebhookView, BrokerError> {
        webhooks::view(&self.services, who, id).await
    }

    pub async fn delete_webhook(&self, who: &Principal, id: &str) -> Result<(), BrokerError> {
        webhooks::delete(&self.services, who, id).await
    }

    /// A new secret, shown once; the old one still signs for 24 hours.
    pub async fn rotate_webhook_secret(
        &self,
        who: &Principal,
        id: &str,
    ) -> Result<WebhookWithSecret, BrokerError> {
        webhooks::rotate(&self.services, who, id).await
    }

    /// A webhook's deliveries, newest first.
    pub async fn webhook_deliveries(
        &self,
        who: &Principal,
        id: &str,
    ) -> Result<Vec<DeliveryView>, BrokerError> {
        webhooks::deliveries(&self.services, who, id).await
    }

    /// Sends `user_id`'s usage report over `period` by e-mail now.
    pub async fn send_report(
        &self,
        user_id: &str,
        period: oneflow::email::Period,
    ) -> Result<SentReport, BrokerError> {
        crate::usecase::reports::send_now(&self.services, user_id, period).await
    }

    // Teams (`usecase/teams.rs`).

    pub async fn create_team(
        &self,
        who: &Principal,
        name: String,
    ) -> Result<TeamView, BrokerError> {
        teams::create(&self.services, who, name).await
    }

    pub async fn teams(&self, who: &Principal) -> Result<Vec<TeamView>, BrokerError> {
        teams::list(&self.services, who).await
    }

    pub async fn team(&self, who: &Principal, id: &str) -> Result<TeamView, BrokerError> {
        teams::get(&self.services, who, id).await
    }

    /// Adds credits to team `id`'s wallet (its team_admin or billing
    /// members, where `auth.team_top_ups` allows; admins always).
    pub async fn top_up_team(
        &self,
        who: &Principal,
        id: &str,
        amount: oneflow::Credits,
        note: Option<String>,
        idem: Option<crate::wallet::IdemKey>,
    ) -> Result<crate::wallet::ToppedUp, BrokerError> {
        teams::top_up(&self.services, who, id, amount, note, idem).await
    }

    /// Whether `id` names a team (its wallet, figures and webhooks are
    /// under that id).
    pub fn is_team(id: &str) -> bool {
        teams::is_team(id)
    }

    /// `Ok` if `who` may act for the whole team `id` in what `need` names.
    pub async fn act_for_team(
        &self,
        who: &Principal,
        id: &str,
        need: oneflow::access::Permission,
    ) -> Result<(), BrokerError> {
        teams::act_for(&self.services, who, id, need).await
    }

    pub async fn set_team_member(
        &self,
        who: &Principal,
        id: &str,
        user_id: &str,
        role: Role,
    ) -> Result<TeamView, BrokerError> {
        teams::set_member(&self.services, who, id, user_id, role).await
    }

    pub async fn remove_team_member(
        &self,
        who: &Principal,
        id: &str,
        user_id: &str,
    ) -> Result<TeamView, BrokerError> {
        teams::remove_member(&self.services, who, id, user_id).await
    }

    pub async fn create_team_key(
        &self,
        who: &Principal,
        id: &str,
        user_id: Option<&str>,
        role: Option<Role>,
        scope: oneflow::key_scope::KeyScope,
    ) -> Result<CreatedKey, BrokerError> {
        teams::create_key(&self.services, who, id, user_id, role, scope).await
    }

    pub async fn team_wallet(&self, who: &Principal, id: &str) -> Result<WalletView, BrokerError> {
        teams::wallet(&self.services, who, id).await
    }

    pub async fn set_team_budget(
        &self,
        who: &Principal,
        id: &str,
        budget: BudgetConfig,
    ) -> Result<WalletView, BrokerError> {
        teams::set_budget(&self.services, who, id, budget).await
    }

    pub async fn team_requests(
        &self,
        who: &Principal,
        id: &str,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<Page<RequestRecord>, BrokerError> {
        teams::requests(&self.services, who, id, cursor, limit).await
    }
}

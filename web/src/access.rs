//! The permission each route requires, checked when its caller is
//! extracted, before its body is read: a credential whose role does not
//! allow the route gets 403 whatever it sent. [`Can`] is the extractor;
//! the aliases below name the permissions routes ask for, and
//! `oneflow::access::allows` decides.

use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;

use actix_web::dev::Payload;
use actix_web::{FromRequest, HttpRequest};

use oneflow::access::{Permission, allows};
use oneflow_actors::{Broker, Principal};

use crate::auth::authenticate;
use crate::error::ApiError;
use crate::state::AppState;

/// A permission as a type, for [`Can`].
pub trait Need {
    const NEED: Permission;
}

macro_rules! needs {
    ($($name:ident => $p:ident),* $(,)?) => {$(
        #[doc = concat!("Requires `", stringify!($p), "`.")]
        pub struct $name;
        impl Need for $name {
            const NEED: Permission = Permission::$p;
        }
    )*};
}
needs!(ToRead => Read, ToSpend => Spend, ToManage => Manage, ToExport => Export, ToTopUp => TopUp, ToAdminister => Administer);

/// An authenticated caller whose role allows `N`.
pub struct Can<N: Need>(pub Principal, PhantomData<N>);

pub type Reader = Can<ToRead>;
pub type Spender = Can<ToSpend>;
pub type Manager = Can<ToManage>;
pub type Exporter = Can<ToExport>;
pub type TopUpper = Can<ToTopUp>;
pub type AdminCaller = Can<ToAdminister>;

/// `Ok` if `p`'s role allows `need`, else the 403 that says which role
/// lacks what.
pub fn check(p: &Principal, need: Permission) -> Result<(), ApiError> {
    if allows(p.role, need) {
        Ok(())
    } else {
        Err(ApiError::Forbidden { role: p.role, need })
    }
}

impl<N: Need + 'static> FromRequest for Can<N> {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, ApiError>>>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let req = req.clone();
        Box::pin(async move {
            let p = authenticate(req).await?;
            check(&p, N::NEED)?;
            Ok(Can(p, PhantomData))
        })
    }
}

impl<N: Need> Can<N> {
    /// Whose data to act on: the caller's own, or, for an admin, the user
    /// named in `user_id`.
    pub fn subject(&self, user_id: Option<&str>) -> Result<String, ApiError> {
        subject(&self.0, user_id)
    }
}

impl<N: Need> Can<N> {
    /// Like [`Can::subject`], and also a team's id for someone whose role
    /// in the team lets them act for all of it in what `N` names (its
    /// team_admin; viewers and billing members as far as their role goes).
    /// A member naming their team gets 403, an outsider (or anyone, for a
    /// team that does not exist) 404.
    pub async fn subject_or_team(
        &self,
        s: &AppState,
        user_id: Option<&str>,
    ) -> Result<String, ApiError> {
        match user_id {
            Some(id) if Broker::is_team(id) => {
                s.broker.act_for_team(&self.0, id, N::NEED).await?;
                Ok(id.to_string())
            }
            _ => self.subject(user_id),
        }
    }
}

/// See [`Can::subject`].
pub fn subject(p: &Principal, user_id: Option<&str>) -> Result<String, ApiError> {
    match user_id {
        None => Ok(p.user_id.clone()),
        Some(u) if u == p.user_id => Ok(u.to_string()),
        // A user asking for someone else's data learns nothing of it.
        Some(_) if !p.is_admin() => Err(ApiError::NotFound("user".into())),
        Some(u) => Ok(u.to_string()),
    }
}

//! The VS storage admin API of the edge
//! (`/admin/title_regions/{tr}/storages/...`, admin token): managed Redis
//! and external Redis or MongoDB that virtual servers name in `storages`.

use super::admin::Admin;
use super::context::Edge;
use super::error::{ApiError, ErrorBody};
use super::json::ApiJson;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::Json;
use respawn_state::{ClusterState, Command};
use respawn_types::*;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

/// A storage, as the admin API shows it.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct StorageView {
    pub title_region_id: String,
    pub name: String,
    pub spec: StorageSpec,
    /// For a managed Redis: the virtual server that runs it.
    pub managed_vs: Option<String>,
    /// Virtual servers whose definition names it.
    pub bound_to: Vec<String>,
    /// The variable its virtual servers' instances get.
    pub env_name: String,
    /// What `env_name` holds now; null while a managed Redis has no running
    /// instance yet (instances of bound virtual servers wait for it).
    pub env_value: Option<String>,
    pub created_at: u64,
    pub updated_at: u64,
}

fn view(s: &ClusterState, st: &Storage) -> StorageView {
    let env_value = respawn_actors::vs_policy::instance::storage_env(
        respawn_actors::vs_policy::instance::InstanceSpecView::of(s),
        &st.title_region_id,
        &st.name,
    )
    .flatten();
    StorageView {
        title_region_id: st.title_region_id.to_string(),
        name: st.name.to_string(),
        spec: st.spec.clone(),
        managed_vs: st
            .spec
            .is_managed()
            .then(|| st.name.managed_vs().to_string()),
        bound_to: s.bound_to(&st.title_region_id, &st.name),
        env_name: st.name.env_name(),
        env_value,
        created_at: st.created_at,
        updated_at: st.updated_at,
    }
}

fn tr_id(s: &str) -> Result<TitleRegionId, ApiError> {
    TitleRegionId::parse(s).map_err(|e| ApiError::bad_request(format!("tr: {e}")))
}

fn storage_name(s: &str) -> Result<StorageName, ApiError> {
    StorageName::parse(s).map_err(|e| ApiError::bad_request(format!("name: {e}")))
}

async fn get_view(
    edge: &Edge,
    tr: &TitleRegionId,
    name: &StorageName,
) -> Result<Json<StorageView>, ApiError> {
    edge.server
        .cluster
        .read(|s| s.storage(tr, name).map(|st| view(s, st)))
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::not_found(format!("storage '{name}' not found")))
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct StorageList {
    pub storages: Vec<StorageView>,
}

/// List a title region's VS storages.
#[utoipa::path(get, path = "/admin/title_regions/{tr}/storages", tag = "Virtual servers admin",
    params(("tr" = String, Path, description = "title region id")),
    responses((status = 200, body = StorageList), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("admin_token" = [])))]
pub async fn list(
    State(edge): State<Edge>,
    _: Admin,
    Path(tr): Path<String>,
) -> Result<Json<StorageList>, ApiError> {
    let tr = tr_id(&tr)?;
    let storages = edge
        .server
        .cluster
        .read(|s| {
            s.title_regions.contains_key(&tr).then(|| {
                s.storages
                    .get(&tr)
                    .map(|m| m.values().map(|st| view(s, st)).collect())
                    .unwrap_or_default()
            })
        })
        .await?
        .ok_or_else(|| ApiError::not_found(format!("title region '{tr}' not found")))?;
    Ok(Json(StorageList { storages }))
}

/// Create or change a VS storage. `managed_redis`: Respawn runs a
/// `redis-server` as the virtual server `storage-<name>` with a generated
/// password; `external_redis` / `external_mongodb`: addresses and password
/// given here. A storage cannot change between managed and external.
#[utoipa::path(put, path = "/admin/title_regions/{tr}/storages/{name}", tag = "Virtual servers admin",
    params(("tr" = String, Path), ("name" = String, Path, description = "letters and digits (1–48)")),
    request_body = StorageSpec,
    responses((status = 200, body = StorageView), (status = 400, body = ErrorBody),
              (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
              (status = 409, body = ErrorBody), (status = 415, body = ErrorBody)),
    security(("admin_token" = [])))]
pub async fn put(
    State(edge): State<Edge>,
    _: Admin,
    Path((tr, name)): Path<(String, String)>,
    ApiJson(spec): ApiJson<StorageSpec>,
) -> Result<Json<StorageView>, ApiError> {
    let tr = tr_id(&tr)?;
    let name = storage_name(&name)?;
    spec.validate().map_err(ApiError::bad_request)?;
    edge.server
        .cluster
        .propose(Command::PutStorage {
            title_region_id: tr.clone(),
            name: name.clone(),
            spec,
            password: crate::bootstrap::random_hex(16),
        })
        .await?;
    get_view(&edge, &tr, &name).await
}

/// One VS storage, with the variable its virtual servers get.
#[utoipa::path(get, path = "/admin/title_regions/{tr}/storages/{name}", tag = "Virtual servers admin",
    params(("tr" = String, Path), ("name" = String, Path)),
    responses((status = 200, body = StorageView), (status = 400, body = ErrorBody),
              (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("admin_token" = [])))]
pub async fn get_one(
    State(edge): State<Edge>,
    _: Admin,
    Path((tr, name)): Path<(String, String)>,
) -> Result<Json<StorageView>, ApiError> {
    get_view(&edge, &tr_id(&tr)?, &storage_name(&name)?).await
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct DeleteStorageParams {
    /// Delete even while virtual servers name it (their new instances get
    /// no variable for it).
    #[serde(default)]
    pub force: bool,
}

/// Delete a VS storage (a managed Redis's virtual server and instance go
/// with it; its data directory stays on the agent host). Refused (409)
/// while a virtual server names it, unless `force=true`.
#[utoipa::path(delete, path = "/admin/title_regions/{tr}/storages/{name}", tag = "Virtual servers admin",
    params(("tr" = String, Path), ("name" = String, Path), DeleteStorageParams),
    responses((status = 204), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)),
    security(("admin_token" = [])))]
pub async fn delete(
    State(edge): State<Edge>,
    _: Admin,
    Path((tr, name)): Path<(String, String)>,
    q: Result<Query<DeleteStorageParams>, axum::extract::rejection::QueryRejection>,
) -> Result<StatusCode, ApiError> {
    let Query(q) = q.map_err(|e| ApiError::bad_request(e.body_text()))?;
    edge.server
        .cluster
        .propose(Command::DeleteStorage {
            title_region_id: tr_id(&tr)?,
            name: storage_name(&name)?,
            force: q.force,
        })
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

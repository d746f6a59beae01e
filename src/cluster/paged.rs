//! Paged, projecting lists: every LIST in pages of [`PAGE_SIZE`] with `continue`, each page
//! decoded straight into the sparse type `K` (a [`Slim`](super::Slim) object) and mapped at
//! once to what the caller keeps, so memory follows a page and the projections, never the
//! whole objects of the fleet.
//!
//! A continue token that expired (`410 Gone`: the API server compacted the resourceVersion
//! the list was consistent at) restarts the list from the first page, dropping what was
//! read, at most [`RESTARTS`] times; then the list fails. A caller never sees a list made
//! of pages of two different resourceVersions, nor a partial one.
use kube::Client;
use kube::api::ListParams;
use kube::core::Request;
use serde::Deserialize;
use serde::de::DeserializeOwned;

/// Objects per list request (kube-runtime's watcher and kubectl page by 500 too).
pub const PAGE_SIZE: u32 = 500;

/// Lists started afresh after a `410 Gone` on a continue before giving up.
pub const RESTARTS: usize = 2;

#[derive(Debug, thiserror::Error)]
pub enum ListError {
    /// The API answered with an error (403, 500, ...) or could not be reached.
    #[error("{0}")]
    Api(#[from] kube::Error),
    #[error(
        "the list expired while paging (410 Gone on a continue, {attempts} attempts): nothing is decided on a partial list"
    )]
    Expired { attempts: usize },
    #[error("cannot build the list request: {0}")]
    Request(String),
}

impl ListError {
    /// The HTTP status of an API error, if any.
    pub fn status(&self) -> Option<u16> {
        match self {
            ListError::Api(kube::Error::Api(status)) => Some(status.code),
            _ => None,
        }
    }
}

#[derive(Deserialize, Default)]
#[serde(default)]
#[serde(rename_all = "camelCase")]
struct ListMeta {
    #[serde(rename = "continue")]
    continue_: Option<String>,
    resource_version: Option<String>,
}

#[derive(Deserialize)]
#[serde(bound = "K: DeserializeOwned")]
struct Page<K> {
    #[serde(default)]
    metadata: ListMeta,
    #[serde(default)]
    items: Option<Vec<K>>,
}

/// Every object of `K` in `namespace` (or all namespaces; cluster-scoped kinds take
/// `None`) that `params` selects, each passed through `keep` as its page comes in.
pub async fn list<K, V>(
    client: &Client,
    namespace: Option<&str>,
    params: &ListParams,
    mut keep: impl FnMut(K) -> V,
) -> Result<Vec<V>, ListError>
where
    K: kube::Resource<DynamicType = ()> + DeserializeOwned,
{
    fold(client, namespace, params, Vec::new, |kept, object| {
        kept.push(keep(object))
    })
    .await
    .map(|(kept, _)| kept)
}

/// The current resourceVersion of the list of `K` (one request for one object): a
/// snapshot's version, at which other lists can then be read with
/// `resourceVersionMatch=Exact`.
pub async fn version<K>(
    client: &Client,
    namespace: Option<&str>,
    params: &ListParams,
) -> Result<Option<String>, ListError>
where
    K: kube::Resource<DynamicType = ()> + DeserializeOwned,
{
    let mut params = params.clone().limit(1);
    params.continue_token = None;
    let http = Request::new(K::url_path(&(), namespace))
        .list(&params)
        .map_err(|e| ListError::Request(e.to_string()))?;
    let page: Page<K> = client.request(http).await?;
    Ok(page.metadata.resource_version.filter(|v| !v.is_empty()))
}

/// Folds every object of the list into a state made by `init` (made afresh when the list
/// restarts after a `410 Gone`); returns it with the list's resourceVersion. Pages hold
/// `params.limit` objects when set (a smaller page for large objects), else [`PAGE_SIZE`].
pub async fn fold<K, S>(
    client: &Client,
    namespace: Option<&str>,
    params: &ListParams,
    init: impl Fn() -> S,
    mut step: impl FnMut(&mut S, K),
) -> Result<(S, Option<String>), ListError>
where
    K: kube::Resource<DynamicType = ()> + DeserializeOwned,
{
    let request = Request::new(K::url_path(&(), namespace));
    let mut attempts = 0;
    'list: loop {
        attempts += 1;
        let mut state = init();
        let mut version = None;
        let limit = params.limit.unwrap_or(PAGE_SIZE);
        let mut params = params.clone().limit(limit);
        params.continue_token = None;
        loop {
            let http = request
                .list(&params)
                .map_err(|e| ListError::Request(e.to_string()))?;
            let page: Page<K> = match client.request(http).await {
                Ok(page) => page,
                Err(kube::Error::Api(status))
                    if status.code == 410 && params.continue_token.is_some() =>
                {
                    if attempts > RESTARTS {
                        return Err(ListError::Expired { attempts });
                    }
                    tracing::info!(
                        kind = %K::kind(&()),
                        attempt = attempts,
                        "the list expired while paging (410 Gone); listing again from the start"
                    );
                    continue 'list;
                }
                Err(err) => return Err(err.into()),
            };
            if version.is_none() {
                version = page.metadata.resource_version;
            }
            for object in page.items.into_iter().flatten() {
                step(&mut state, object);
            }
            match page.metadata.continue_ {
                Some(token) if !token.is_empty() => params.continue_token = Some(token),
                _ => return Ok((state, version)),
            }
        }
    }
}

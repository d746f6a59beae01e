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

/// What [`Pager::next`] read.
pub enum Next<K> {
    /// The objects of the next page.
    Page(Vec<K>),
    /// The list expired while paging (`410 Gone` on a continue) and starts again: what the
    /// pages before held is to be read again from the next page on.
    Restarted,
    /// The list is complete.
    Done,
}

/// A list read page by page, for a caller that acts between pages (an `await` of its own).
/// Pages hold `params.limit` objects when set (a smaller page for large objects), else
/// [`PAGE_SIZE`]. A `410 Gone` on a continue starts the list again ([`Next::Restarted`]),
/// at most [`RESTARTS`] times; then the list fails.
pub struct Pager<K> {
    request: Request,
    params: ListParams,
    attempts: usize,
    version: Option<String>,
    done: bool,
    kind: std::marker::PhantomData<fn() -> K>,
}

impl<K> Pager<K>
where
    K: kube::Resource<DynamicType = ()> + DeserializeOwned,
{
    pub fn new(namespace: Option<&str>, params: &ListParams) -> Pager<K> {
        let limit = params.limit.unwrap_or(PAGE_SIZE);
        let mut params = params.clone().limit(limit);
        params.continue_token = None;
        Pager {
            request: Request::new(K::url_path(&(), namespace)),
            params,
            attempts: 1,
            version: None,
            done: false,
            kind: std::marker::PhantomData,
        }
    }

    /// The resourceVersion of the list as it stands (its first page's).
    pub fn version(&self) -> Option<&str> {
        self.version.as_deref()
    }

    pub async fn next(&mut self, client: &Client) -> Result<Next<K>, ListError> {
        if self.done {
            return Ok(Next::Done);
        }
        let http = self
            .request
            .list(&self.params)
            .map_err(|e| ListError::Request(e.to_string()))?;
        let page: Page<K> = match client.request(http).await {
            Ok(page) => page,
            Err(kube::Error::Api(status))
                if status.code == 410 && self.params.continue_token.is_some() =>
            {
                if self.attempts > RESTARTS {
                    return Err(ListError::Expired {
                        attempts: self.attempts,
                    });
                }
                tracing::info!(
                    kind = %K::kind(&()),
                    attempt = self.attempts,
                    "the list expired while paging (410 Gone); listing again from the start"
                );
                self.attempts += 1;
                self.params.continue_token = None;
                self.version = None;
                return Ok(Next::Restarted);
            }
            Err(err) => return Err(err.into()),
        };
        if self.version.is_none() {
            self.version = page.metadata.resource_version;
        }
        match page.metadata.continue_ {
            Some(token) if !token.is_empty() => self.params.continue_token = Some(token),
            _ => self.done = true,
        }
        Ok(Next::Page(page.items.unwrap_or_default()))
    }
}

/// Folds every object of the list into a state made by `init` (made afresh when the list
/// restarts after a `410 Gone`); returns it with the list's resourceVersion. Pages as
/// [`Pager`].
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
    let mut pager = Pager::new(namespace, params);
    let mut state = init();
    loop {
        match pager.next(client).await? {
            Next::Page(items) => items
                .into_iter()
                .for_each(|object| step(&mut state, object)),
            Next::Restarted => state = init(),
            Next::Done => return Ok((state, pager.version)),
        }
    }
}

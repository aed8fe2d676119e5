//! The announced routes of a compiled topology, sorted by prefix, stored in chunks that
//! generations share: chunk `k` holds the routes of the prefixes of the prefix list's chunk
//! `k` (`prefix_list.rs`), with each route's service beside it in a dense array (the
//! per-location scan of [`crate::Topology::desired`] reads 4 bytes a route, not 52). A patched
//! compile (an `advertise` toggled, see `compile/patch.rs`) builds the chunks holding the
//! prefixes it compiled again and shares the others with the running generation; the plan's
//! diff then passes over the shared chunks when no service changed, and G3 when every service
//! live before is live after. One vector of every route made a toggle copy all of them (≈ 5 ms
//! at 300,000 bindings, half of it in page faults), and the running generation's drop free
//! them all again.
//!
//! Unlike prefix chunks, route chunks are of any length (a prefix split into /24s has many
//! routes, one with `advertise = false` none): a route's place is found from the chunks'
//! first places by a binary search, a search ([`RouteList::partition_point`]) goes by the
//! non-empty chunks' last routes and then inside one chunk. Readers iterate or search.
//!
//! Owns: the storage and its sharing. Must not touch: which routes a prefix has (the compile's
//! routes phase).

use std::sync::Arc;

use crate::model::Route;

/// Routes sorted by prefix in shared chunks; see the module comment. Cloning it shares every
/// chunk.
#[derive(Clone, Default)]
pub(crate) struct RouteList {
    chunks: Vec<Arc<RouteChunk>>,
    /// The place of each chunk's first route, and the list's length last (one more entry
    /// than there are chunks).
    starts: Vec<usize>,
    /// The chunks that hold a route, by index: a search decides by a chunk's last route.
    nonempty: Vec<usize>,
}

/// The routes of up to one prefix chunk, and their services.
#[derive(Debug, Default)]
pub(crate) struct RouteChunk {
    routes: Vec<Route>,
    services: Vec<u32>,
}

impl RouteChunk {
    /// The chunk's routes, in order.
    pub(crate) fn routes(&self) -> &[Route] {
        &self.routes
    }

    /// `routes()[i].service`, densely.
    pub(crate) fn services(&self) -> &[u32] {
        &self.services
    }
}

impl RouteList {
    /// The same routes in chunks of their own, shared with no other list (for the tests).
    #[cfg(test)]
    pub(crate) fn unshared(&self) -> RouteList {
        let mut builder = RouteListBuilder::default();
        for (_, chunk) in self.chunks() {
            for route in chunk.routes() {
                builder.push(*route);
            }
            builder.end_chunk();
        }
        builder.finish()
    }

    /// How many routes there are.
    pub(crate) fn len(&self) -> usize {
        self.starts.last().copied().unwrap_or(0)
    }

    /// The chunks in order, each with the place of its first route.
    pub(crate) fn chunks(&self) -> impl Iterator<Item = (usize, &Arc<RouteChunk>)> {
        self.starts.iter().copied().zip(&self.chunks)
    }

    /// How many chunks hold the list.
    pub(crate) fn chunk_count(&self) -> usize {
        self.chunks.len()
    }

    /// The chunk at `index`, if there is one.
    pub(crate) fn chunk(&self, index: usize) -> Option<&Arc<RouteChunk>> {
        self.chunks.get(index)
    }

    /// The route at `place`, if there is one.
    pub(crate) fn get(&self, place: usize) -> Option<&Route> {
        if place >= self.len() {
            return None;
        }
        // The last chunk whose first place is at or before `place` (an empty chunk shares
        // its first place with the next one: the search passes over it).
        let chunk = self.starts.partition_point(|start| *start <= place) - 1;
        self.chunks
            .get(chunk)?
            .routes
            .get(place - self.starts[chunk])
    }

    /// The routes in order.
    pub(crate) fn iter(&self) -> Iter<'_> {
        self.iter_from(0)
    }

    /// The routes from `place` on, in order.
    pub(crate) fn iter_from(&self, place: usize) -> Iter<'_> {
        let place = place.min(self.len());
        let chunk = self.starts.partition_point(|start| *start <= place);
        // At the end (`chunk - 1` past the chunks), or in an empty list, nothing is left.
        let (current, rest) = match chunk.checked_sub(1).filter(|at| *at < self.chunks.len()) {
            Some(at) => (
                self.chunks[at].routes[place - self.starts[at]..].iter(),
                &self.chunks[at + 1..],
            ),
            None => ([].iter(), &self.chunks[self.chunks.len()..]),
        };
        Iter {
            chunks: rest.iter(),
            current,
            left: self.len() - place,
        }
    }

    /// The first place whose route does not satisfy `before` (the list being partitioned by
    /// it: every route that does comes first), as [`slice::partition_point`].
    pub(crate) fn partition_point(&self, before: impl Fn(&Route) -> bool) -> usize {
        // The chunks holding routes whose last route is before are wholly before; the search
        // ends in the first other one (empty chunks have no last route to decide by).
        let found = self
            .nonempty
            .partition_point(|chunk| self.chunks[*chunk].routes.last().is_some_and(&before));
        match self.nonempty.get(found) {
            Some(chunk) => self.starts[*chunk] + self.chunks[*chunk].routes.partition_point(before),
            None => self.len(),
        }
    }

    /// The routes in order, passing over (when `pass_over_shared`) the chunks that are
    /// `other`'s chunk at the same place: a chunk two lists share holds the same routes in
    /// both, and no route of the others (the routes of a list are disjoint), so two walks that
    /// pair routes by prefix may pass over the shared chunks on both sides.
    pub(crate) fn outside_shared<'list>(
        &'list self,
        other: &'list RouteList,
        pass_over_shared: bool,
    ) -> impl Iterator<Item = &'list Route> + 'list {
        self.chunks
            .iter()
            .enumerate()
            .filter(move |(index, chunk)| {
                !pass_over_shared
                    || other
                        .chunks
                        .get(*index)
                        .is_none_or(|theirs| !Arc::ptr_eq(chunk, theirs))
            })
            .flat_map(|(_, chunk)| chunk.routes.iter())
    }

    /// How many of this list's chunks are the same (shared) as `other`'s at the same place.
    pub(crate) fn chunks_shared_with(&self, other: &RouteList) -> usize {
        self.chunks
            .iter()
            .zip(&other.chunks)
            .filter(|(left, right)| Arc::ptr_eq(left, right))
            .count()
    }
}

impl std::ops::Index<usize> for RouteList {
    type Output = Route;

    /// The route at `place`; panics past the end, as a slice does (the places read are
    /// always within the list).
    fn index(&self, place: usize) -> &Route {
        match self.get(place) {
            Some(route) => route,
            None => panic!("route {place} of {}", self.len()),
        }
    }
}

impl std::fmt::Debug for RouteList {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.debug_list().entries(self.iter()).finish()
    }
}

impl<'list> IntoIterator for &'list RouteList {
    type Item = &'list Route;
    type IntoIter = Iter<'list>;

    fn into_iter(self) -> Iter<'list> {
        self.iter()
    }
}

/// The routes of a [`RouteList`] in order.
#[derive(Debug, Clone)]
pub(crate) struct Iter<'list> {
    chunks: std::slice::Iter<'list, Arc<RouteChunk>>,
    current: std::slice::Iter<'list, Route>,
    left: usize,
}

impl<'list> Iterator for Iter<'list> {
    type Item = &'list Route;

    #[inline]
    fn next(&mut self) -> Option<&'list Route> {
        loop {
            if let Some(route) = self.current.next() {
                self.left -= 1;
                return Some(route);
            }
            self.current = self.chunks.next()?.routes.iter();
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.left, Some(self.left))
    }
}

impl ExactSizeIterator for Iter<'_> {}

/// Builds a [`RouteList`] a chunk at a time: routes pushed in order, each chunk ended, or a
/// running generation's chunk shared whole in its place.
#[derive(Default)]
pub(crate) struct RouteListBuilder {
    list: RouteList,
    current: RouteChunk,
    len: usize,
}

impl RouteListBuilder {
    /// Adds `route` to the chunk being built.
    pub(crate) fn push(&mut self, route: Route) {
        self.current.services.push(route.service);
        self.current.routes.push(route);
    }

    /// Makes room for `routes` more routes in the chunk being built: a chunk made in one
    /// allocation, not grown from empty (a thousand chunks grown by doubling leave the heap
    /// holding their outgrown blocks: ≈ 50 MB more at the peak of a million routes).
    pub(crate) fn reserve(&mut self, routes: usize) {
        self.current.routes.reserve_exact(routes);
        self.current.services.reserve_exact(routes);
    }

    /// Ends the chunk being built (empty or not).
    pub(crate) fn end_chunk(&mut self) {
        let mut chunk = std::mem::take(&mut self.current);
        chunk.routes.shrink_to_fit();
        chunk.services.shrink_to_fit();
        self.add(Arc::new(chunk));
    }

    /// Puts `chunk` (another list's) in the next place; the chunk being built must be empty.
    pub(crate) fn share(&mut self, chunk: &Arc<RouteChunk>) {
        debug_assert!(self.current.routes.is_empty());
        self.add(Arc::clone(chunk));
    }

    fn add(&mut self, chunk: Arc<RouteChunk>) {
        if !chunk.routes.is_empty() {
            self.list.nonempty.push(self.list.chunks.len());
        }
        self.list.starts.push(self.len);
        self.len += chunk.routes.len();
        self.list.chunks.push(chunk);
    }

    /// The list (a chunk being built and not ended is dropped).
    pub(crate) fn finish(mut self) -> RouteList {
        self.list.starts.push(self.len);
        self.list
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn route(number: u32) -> Route {
        let prefix = ipnet::IpNet::V4(
            ipnet::Ipv4Net::new(std::net::Ipv4Addr::from(number << 8), 24).unwrap(),
        );
        Route {
            prefix,
            binding_cidr: prefix,
            origin_asn: number,
            onboarded: number,
            binding: number,
            service: number % 7,
        }
    }

    proptest! {
        /// Whatever its chunks' lengths (empty ones too), the list reads as the vector of its
        /// routes: by place, in order, from any place, by search; each chunk's services are
        /// its routes'; a shared chunk is the same chunk in both lists.
        #[test]
        fn the_list_reads_as_its_vector(
            lengths in proptest::collection::vec(0usize..40, 0..12),
            shared in proptest::collection::vec(any::<bool>(), 12),
            searched in 0u32..500,
            from in 0usize..500,
        ) {
            let mut builder = RouteListBuilder::default();
            let mut vector = Vec::new();
            for length in &lengths {
                for _ in 0..*length {
                    let next = route(vector.len() as u32 * 2);
                    builder.push(next);
                    vector.push(next);
                }
                builder.end_chunk();
            }
            let list = builder.finish();
            let key = |route: &Route| (route.prefix, route.origin_asn);
            prop_assert_eq!(list.len(), vector.len());
            prop_assert_eq!(list.iter().len(), vector.len());
            prop_assert!(list.iter().map(key).eq(vector.iter().map(key)));
            for (place, route) in vector.iter().enumerate() {
                prop_assert_eq!(key(&list[place]), key(route));
            }
            prop_assert!(list.get(vector.len()).is_none());
            let skipped: Vec<_> = list.iter_from(from).map(key).collect();
            let expected: Vec<_> = vector.iter().skip(from).map(key).collect();
            prop_assert_eq!(skipped, expected);
            prop_assert_eq!(list.iter_from(from).len(), vector.len().saturating_sub(from));
            let before = |route: &Route| route.origin_asn < searched;
            prop_assert_eq!(list.partition_point(before), vector.partition_point(before));
            let mut placed = 0;
            for (start, chunk) in list.chunks() {
                prop_assert_eq!(start, placed);
                let services: Vec<u32> = chunk.routes().iter().map(|route| route.service).collect();
                prop_assert_eq!(chunk.services(), services.as_slice());
                placed += chunk.routes().len();
            }

            // A list sharing some of the chunks and building the others again reads the same.
            let mut again = RouteListBuilder::default();
            let mut built = 0;
            for (index, (_, chunk)) in list.chunks().enumerate() {
                if shared[index] {
                    again.share(chunk);
                } else {
                    for route in chunk.routes() {
                        again.push(*route);
                    }
                    again.end_chunk();
                    built += 1;
                }
            }
            let again = again.finish();
            prop_assert!(again.iter().map(key).eq(vector.iter().map(key)));
            for (place, route) in vector.iter().enumerate() {
                prop_assert_eq!(key(&again[place]), key(route));
            }
            prop_assert!(again.iter_from(from).map(key).eq(vector.iter().skip(from).map(key)));
            prop_assert_eq!(again.partition_point(before), vector.partition_point(before));
            let built_routes: Vec<_> = list
                .chunks()
                .enumerate()
                .filter(|(index, _)| !shared[*index])
                .flat_map(|(_, (_, chunk))| chunk.routes().iter().map(key))
                .collect();
            let outside: Vec<_> = again.outside_shared(&list, true).map(key).collect();
            prop_assert_eq!(outside, built_routes);
            prop_assert!(again.outside_shared(&list, false).map(key).eq(vector.iter().map(key)));
            prop_assert_eq!(again.chunks_shared_with(&list), lengths.len() - built);
        }
    }
}

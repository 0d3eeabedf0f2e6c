//! Google API adapters: OAuth, the Gmail REST client with batching and quota pacing.

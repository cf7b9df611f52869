package summary

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/clock"

	"github.com/rebootgate/rebootgate/engine/decision"
	"github.com/rebootgate/rebootgate/engine/disruption"
	"github.com/rebootgate/rebootgate/engine/facts"
)

// The node index's shards, each in ConfigMap IndexConfigMapName(i) of the summary's
// namespace under IndexDataKey (a disruption.IndexShard as JSON).
const (
	IndexConfigMapPrefix = "rebootgate-node-index-"
	IndexDataKey         = "index.json"
	// DefaultIndexInterval is how often at most the summarizer rewrites the index: it
	// changes only when nodes come, go or change addresses, and each change costs every
	// agent that needs the changed shard one GET.
	DefaultIndexInterval = 10 * time.Second
	// indexRetry is how long a reader waits before reading a shard again whose hash is
	// not the one the summary names, while the summary names the same one: normally
	// the next summary names the shard read, and the reader then needs no other read.
	indexRetry = 10 * time.Second
)

// IndexConfigMapName is the ConfigMap of node index shard i.
func IndexConfigMapName(i int) string { return fmt.Sprint(IndexConfigMapPrefix, i) }

// IndexConfigMapNames are the ConfigMaps of every shard there may be
// (disruption.MaxIndexShards), as the Roles name them.
func IndexConfigMapNames() []string {
	out := make([]string, disruption.MaxIndexShards)
	for i := range out {
		out[i] = IndexConfigMapName(i)
	}
	return out
}

// IndexReader reads node index shards for one reader (an agent, or live eval): only the
// shards of the keys it looks up, and each only when the summary names a hash it has
// not read yet, so that a cluster without such alerts costs nothing and an index change
// costs one GET per shard a reader needs. Agents never watch the index.
type IndexReader struct {
	client    kubernetes.Interface
	namespace string
	clock     clock.PassiveClock

	mu    sync.Mutex
	cache map[int]indexRead // by shard number
}

// indexRead is the last read of one shard.
type indexRead struct {
	shard *disruption.IndexShard // nil when the read failed
	err   error
	want  string    // the hash the summary named when it was read
	at    time.Time // when it was read
}

// NewIndexReader returns an IndexReader of the shards in namespace.
func NewIndexReader(client kubernetes.Interface, namespace string, clk clock.PassiveClock) *IndexReader {
	return &IndexReader{client: client, namespace: namespace, clock: clk, cache: map[int]indexRead{}}
}

// Read returns the shards holding keys, of the index ref names (a usable summary's),
// and why some could not be read. A shard is read again only when ref names another
// hash than the last read's, or after indexRetry when that read failed or found
// another hash. Reads are served from the API server's watch cache (resourceVersion=0),
// cheap even when thousands of agents read at once after an index change; such a read
// may lag the summary that named it (the summarizer writes shards first, so it is at
// most a moment behind), and is then retried after indexRetry, the alert failing closed
// meanwhile.
func (r *IndexReader) Read(ctx context.Context, ref *disruption.IndexRef, keys []string) ([]*disruption.IndexShard, error) {
	if ref == nil || ref.Shards < 1 || len(ref.Hashes) != ref.Shards {
		return nil, fmt.Errorf("the node summary names no valid node index: %+v", ref)
	}
	want := map[int]bool{}
	for _, k := range keys {
		want[disruption.ShardOf(k, ref.Shards)] = true
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []*disruption.IndexShard
	var errs []error
	for i := range ref.Shards {
		if !want[i] {
			continue
		}
		c, ok := r.cache[i]
		now := r.clock.Now()
		current := ok && c.shard != nil && c.shard.Hash == ref.Hashes[i]
		retryLater := ok && c.want == ref.Hashes[i] && now.Sub(c.at) < indexRetry && !now.Before(c.at)
		if !current && !retryLater {
			c = r.read(ctx, i, ref.Hashes[i], now)
			r.cache[i] = c
		}
		if c.err != nil {
			errs = append(errs, c.err)
		}
		if c.shard != nil {
			out = append(out, c.shard)
		}
	}
	return out, errors.Join(errs...)
}

// read GETs shard i.
func (r *IndexReader) read(ctx context.Context, i int, want string, now time.Time) indexRead {
	name := IndexConfigMapName(i)
	c := indexRead{want: want, at: now}
	cm, err := r.client.CoreV1().ConfigMaps(r.namespace).Get(ctx, name, metav1.GetOptions{ResourceVersion: "0"})
	switch {
	case apierrors.IsNotFound(err):
		c.err = fmt.Errorf("no node index shard: ConfigMap %s/%s does not exist", r.namespace, name)
	case err != nil:
		c.err = fmt.Errorf("reading node index shard %s/%s: %w", r.namespace, name, err)
	default:
		if c.shard, err = disruption.DecodeIndexShard([]byte(cm.Data[IndexDataKey])); err != nil {
			c.err = fmt.Errorf("ConfigMap %s/%s key %s: %w", r.namespace, name, IndexDataKey, err)
		} else if c.shard.Shard != i {
			c.shard, c.err = nil, fmt.Errorf("ConfigMap %s/%s key %s holds shard %d, not %d", r.namespace, name, IndexDataKey, c.shard.Shard, i)
		}
	}
	return c
}

// Fill reads into f the shards holding keys (Engine.NodeIndexKeys), when there are
// keys and f's summary is usable at now and names an index: a summary that cannot be
// used makes the index unusable anyway, so no shard is read for it.
func (r *IndexReader) Fill(ctx context.Context, f *facts.Facts, keys []string, now time.Time) {
	if len(keys) == 0 {
		return
	}
	if s, err := decision.UsableSummary(f, now); err == nil && s.NodeIndex != nil {
		f.NodeIndex, f.NodeIndexErr = r.Read(ctx, s.NodeIndex, keys)
	}
}

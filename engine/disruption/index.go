package disruption

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"net/netip"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
)

// The node index is every node's name and IdentityAddresses, published by the
// summarizer so that agents can tell whether an alert's instance names a node. It grows
// with the cluster (about 120 bytes a node with EKS-style names: TestIndexSizeAt5000Nodes),
// so it is not in the summary, which every agent reads at every decision that needs it
// and which is rewritten at every heartbeat: it is split into shards by a stable hash of
// the lookup key (IndexKey of a name or an address), each in a ConfigMap of its own,
// rewritten only when its content changes. The summary names the shards' content hashes
// (IndexRef); an agent reads only the shard of the key it looks up, and only when the
// summary names a hash it has not read yet.
const (
	// IndexShardTarget is the encoded size a shard aims at: the shard count is the index
	// size divided by it, rounded up.
	IndexShardTarget = 128 << 10
	// IndexShardLimit is the largest shard published: a ConfigMap holds at most 1 MiB
	// (etcd's request limit is a little more), and the object's metadata needs room.
	IndexShardLimit = 900 << 10
	// MaxIndexShards bounds the shard count, so that the Roles can name every shard's
	// ConfigMap (IndexConfigMapName): 16 shards at the target hold about 17,000 nodes,
	// and up to the limit about 120,000.
	MaxIndexShards = 16
)

// IndexRef is what the summary says of the published node index: how many shards
// there are and the content hash of each (IndexShard.Encode), in shard order. A shard
// read is the summary's only if its hash is the one named here.
type IndexRef struct {
	Shards int      `json:"shards"`
	Hashes []string `json:"hashes"`
}

// IndexShard is one shard of the node index: the nodes whose names, and the addresses
// whose IndexKey, hash to it (ShardOf).
type IndexShard struct {
	Shard  int `json:"shard"`
	Shards int `json:"shards"`
	// Names are node names, sorted.
	Names []string `json:"names"`
	// Addresses map an address (IndexKey) to the names of the nodes that have it, sorted.
	Addresses map[string][]string `json:"addresses"`
	// Hash is the content hash of the encoded shard, set by Encode and DecodeIndexShard
	// from the bytes themselves (never read from them).
	Hash string `json:"-"`
}

// IndexKey is the form identities are looked up in: an IP address in its canonical
// text (IPv4-mapped IPv6 as IPv4, without zone), so that fd00::4 and FD00:0::4 are one,
// and anything else lower-cased without a trailing dot.
func IndexKey(s string) string {
	if ip, err := netip.ParseAddr(s); err == nil {
		return ip.Unmap().WithZone("").String()
	}
	return strings.TrimSuffix(strings.ToLower(s), ".")
}

// ShardOf is the shard of key among shards: FNV-1a, stable across versions and
// processes, so that every reader finds a key where the summarizer put it.
func ShardOf(key string, shards int) int {
	if shards <= 1 {
		return 0
	}
	h := fnv.New32a()
	_, _ = h.Write([]byte(key))
	return int(h.Sum32() % uint32(shards))
}

// Lookup returns the nodes whose name or address is key (an IndexKey of this shard),
// sorted, and whether one of them has key as its name.
func (s *IndexShard) Lookup(key string) (nodes []string, isName bool) {
	_, isName = slices.BinarySearch(s.Names, key)
	nodes = slices.Clone(s.Addresses[key])
	if isName && !slices.Contains(nodes, key) {
		nodes = append(nodes, key)
		slices.Sort(nodes)
	}
	return nodes, isName
}

// Encode returns the shard's JSON and sets its Hash.
func (s *IndexShard) Encode() ([]byte, error) {
	data, err := json.Marshal(s)
	if err != nil {
		return nil, fmt.Errorf("encoding node index shard %d: %w", s.Shard, err)
	}
	s.Hash = IndexHash(data)
	return data, nil
}

// DecodeIndexShard parses an encoded shard and hashes its bytes.
func DecodeIndexShard(data []byte) (*IndexShard, error) {
	var s IndexShard
	if err := json.Unmarshal(data, &s); err != nil {
		return nil, fmt.Errorf("not a node index shard: %w", err)
	}
	if s.Shards < 1 || s.Shards > MaxIndexShards || s.Shard < 0 || s.Shard >= s.Shards {
		return nil, fmt.Errorf("not a node index shard: shard %d of %d", s.Shard, s.Shards)
	}
	s.Hash = IndexHash(data)
	return &s, nil
}

// IndexHash is the content hash of an encoded shard: 16 hex digits of its SHA-256.
func IndexHash(data []byte) string {
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:8])
}

// BuildIndex indexes nodes into at least minShards shards (a summarizer never shrinks
// its count, so that readers' shards stay put), more when the index is larger than
// IndexShardTarget per shard, each encoded: the shards, their encodings and the
// reference the summary names. It fails when the index does not fit MaxIndexShards
// shards of IndexShardLimit.
func BuildIndex(nodes []*corev1.Node, minShards int) ([]*IndexShard, [][]byte, *IndexRef, error) {
	// The size of one shard holding everything decides the count.
	shards, data, err := buildIndex(nodes, 1)
	if err != nil {
		return nil, nil, nil, err
	}
	n := max(minShards, (len(data[0])+IndexShardTarget-1)/IndexShardTarget, 1)
	if n > MaxIndexShards {
		return nil, nil, nil, fmt.Errorf("the node index of %d nodes is %d bytes, more than %d shards of %d", len(nodes), len(data[0]), MaxIndexShards, IndexShardTarget)
	}
	if n > 1 {
		if shards, data, err = buildIndex(nodes, n); err != nil {
			return nil, nil, nil, err
		}
	}
	ref := &IndexRef{Shards: n, Hashes: make([]string, n)}
	for i, s := range shards {
		if len(data[i]) > IndexShardLimit {
			return nil, nil, nil, fmt.Errorf("node index shard %d of %d is %d bytes, more than %d", i, n, len(data[i]), IndexShardLimit)
		}
		ref.Hashes[i] = s.Hash
	}
	return shards, data, ref, nil
}

func buildIndex(nodes []*corev1.Node, n int) ([]*IndexShard, [][]byte, error) {
	shards := make([]*IndexShard, n)
	for i := range shards {
		shards[i] = &IndexShard{Shard: i, Shards: n, Names: []string{}, Addresses: map[string][]string{}}
	}
	for _, node := range nodes {
		name := IndexKey(node.Name)
		s := shards[ShardOf(name, n)]
		s.Names = append(s.Names, name)
		for _, a := range IdentityAddresses(node) {
			key := IndexKey(a)
			if key == name {
				continue
			}
			s := shards[ShardOf(key, n)]
			if !slices.Contains(s.Addresses[key], node.Name) {
				s.Addresses[key] = append(s.Addresses[key], node.Name)
			}
		}
	}
	data := make([][]byte, n)
	for i, s := range shards {
		slices.Sort(s.Names)
		s.Names = slices.Compact(s.Names)
		for _, v := range s.Addresses {
			slices.Sort(v)
		}
		var err error
		if data[i], err = s.Encode(); err != nil {
			return nil, nil, err
		}
	}
	return shards, data, nil
}

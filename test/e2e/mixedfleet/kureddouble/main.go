// Command kureddouble is a test double of a kured agent for the mixed-fleet suite:
// kured itself cannot be downloaded on the test bed. It follows kured's control loop
// and lock protocol as ../shared/brief.md documents them, written independently of
// rebootgate's own engine/kuredlock (a shared bug would otherwise hide):
//
//   - at start, if it holds the lock: uncordon unless the lock's metadata says the
//     node was cordoned before, then release (kured has no boot check);
//   - every --period: no sentinel → nothing; otherwise take the lock (a GET of the
//     DaemonSet and a full-object UPDATE with its resourceVersion; a 409 is re-read
//     after 1s), cordon, drain, run the reboot command, and wait to be killed.
//
// The lock value is {"nodeID","metadata":{"unschedulable"},"created","TTL"} with
// --concurrency 1, and {"maxOwners":N,"locks":[...]} with more; an entry with TTL 0
// never expires.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"os"
	"os/exec"
	"os/signal"
	"syscall"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/kubectl/pkg/drain"
)

type entry struct {
	NodeID   string `json:"nodeID"`
	Metadata struct {
		Unschedulable bool `json:"unschedulable"`
	} `json:"metadata"`
	Created time.Time     `json:"created"`
	TTL     time.Duration `json:"TTL"`
}

type multiValue struct {
	MaxOwners int     `json:"maxOwners"`
	Locks     []entry `json:"locks"`
}

type double struct {
	client                   kubernetes.Interface
	node, ns, ds, annotation string
	sentinel, rebootCmd      string
	concurrency              int
	ttl                      time.Duration
}

func main() {
	d := &double{}
	kubeconfig := flag.String("kubeconfig", "", "kubeconfig")
	period := flag.Duration("period", time.Second, "main loop period")
	flag.StringVar(&d.node, "node-id", "", "this node")
	flag.StringVar(&d.ns, "ds-namespace", "kube-system", "DaemonSet namespace")
	flag.StringVar(&d.ds, "ds-name", "kured", "DaemonSet name")
	flag.StringVar(&d.annotation, "lock-annotation", "weave.works/kured-node-lock", "lock annotation")
	flag.StringVar(&d.sentinel, "reboot-sentinel", "/var/run/reboot-required", "sentinel file")
	flag.StringVar(&d.rebootCmd, "reboot-command", "", "reboot command")
	flag.IntVar(&d.concurrency, "concurrency", 1, "lock holders")
	flag.DurationVar(&d.ttl, "lock-ttl", 0, "lock TTL (0: never expires)")
	flag.Parse()
	cfg, err := clientcmd.BuildConfigFromFlags("", *kubeconfig)
	if err != nil {
		log.Fatal(err)
	}
	if d.client, err = kubernetes.NewForConfig(cfg); err != nil {
		log.Fatal(err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if err := d.run(ctx, *period); err != nil && ctx.Err() == nil {
		log.Fatal(err)
	}
}

func (d *double) run(ctx context.Context, period time.Duration) error {
	if held, meta, err := d.holding(ctx); err != nil {
		return err
	} else if held {
		if !meta.Metadata.Unschedulable {
			if err := d.cordon(ctx, false); err != nil {
				return err
			}
			log.Printf("uncordoned %s", d.node)
		}
		if err := d.release(ctx); err != nil {
			return err
		}
		log.Printf("released the lock")
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(period):
		}
		if _, err := os.Stat(d.sentinel); err != nil {
			continue
		}
		node, err := d.client.CoreV1().Nodes().Get(ctx, d.node, metav1.GetOptions{})
		if err != nil {
			log.Printf("reading node: %v", err)
			continue
		}
		got, err := d.acquire(ctx, node.Spec.Unschedulable)
		if err != nil {
			log.Printf("lock: %v", err)
			continue
		}
		if !got {
			continue
		}
		log.Printf("acquired the lock")
		if err := d.cordon(ctx, true); err != nil {
			return err
		}
		helper := &drain.Helper{Ctx: ctx, Client: d.client, Force: true, IgnoreAllDaemonSets: true, DeleteEmptyDirData: true,
			GracePeriodSeconds: -1, Out: os.Stderr, ErrOut: os.Stderr}
		if err := drain.RunNodeDrain(helper, d.node); err != nil {
			log.Printf("drain failed: %v; releasing", err)
			_ = d.release(ctx)
			_ = d.cordon(ctx, false)
			continue
		}
		log.Printf("rebooting")
		if out, err := exec.CommandContext(ctx, "/bin/sh", "-c", d.rebootCmd).CombinedOutput(); err != nil {
			log.Printf("reboot command: %v: %s", err, out)
		}
		<-ctx.Done() // "waiting for reboot" until the host goes down
		return nil
	}
}

func (d *double) cordon(ctx context.Context, on bool) error {
	patch := fmt.Appendf(nil, `{"spec":{"unschedulable":%t}}`, on)
	_, err := d.client.CoreV1().Nodes().Patch(ctx, d.node, "application/merge-patch+json", patch, metav1.PatchOptions{})
	return err
}

// entries reads the lock's entries in the form --concurrency implies.
func (d *double) entries(ds *appsv1.DaemonSet) ([]entry, error) {
	v, ok := ds.Annotations[d.annotation]
	if !ok {
		return nil, nil
	}
	if d.concurrency > 1 {
		var m multiValue
		if err := json.Unmarshal([]byte(v), &m); err != nil {
			return nil, fmt.Errorf("multi lock %q: %w", v, err)
		}
		return m.Locks, nil
	}
	var e entry
	if err := json.Unmarshal([]byte(v), &e); err != nil {
		return nil, fmt.Errorf("lock %q: %w", v, err)
	}
	return []entry{e}, nil
}

func expired(e entry) bool { return e.TTL > 0 && time.Since(e.Created) >= e.TTL }

func (d *double) holding(ctx context.Context) (bool, entry, error) {
	ds, err := d.client.AppsV1().DaemonSets(d.ns).Get(ctx, d.ds, metav1.GetOptions{})
	if err != nil {
		return false, entry{}, err
	}
	all, err := d.entries(ds)
	if err != nil {
		return false, entry{}, err
	}
	for _, e := range all {
		if e.NodeID == d.node && !expired(e) {
			return true, e, nil
		}
	}
	return false, entry{}, nil
}

// update is kured's write: GET, change, UPDATE with the resourceVersion; a 409 is
// re-read after a second.
func (d *double) update(ctx context.Context, change func([]entry) ([]entry, bool)) (bool, error) {
	for {
		ds, err := d.client.AppsV1().DaemonSets(d.ns).Get(ctx, d.ds, metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		all, err := d.entries(ds)
		if err != nil {
			return false, err
		}
		next, write := change(all)
		if !write {
			return false, nil
		}
		if ds.Annotations == nil {
			ds.Annotations = map[string]string{}
		}
		var data []byte
		switch {
		case d.concurrency > 1:
			data, err = json.Marshal(multiValue{MaxOwners: d.concurrency, Locks: next})
		case len(next) == 1:
			data, err = json.Marshal(next[0])
		}
		if err != nil {
			return false, err
		}
		if data == nil {
			delete(ds.Annotations, d.annotation)
		} else {
			ds.Annotations[d.annotation] = string(data)
		}
		_, err = d.client.AppsV1().DaemonSets(d.ns).Update(ctx, ds, metav1.UpdateOptions{})
		if apierrors.IsConflict(err) {
			time.Sleep(time.Second)
			continue
		}
		return err == nil, err
	}
}

func (d *double) acquire(ctx context.Context, unschedulable bool) (bool, error) {
	return d.update(ctx, func(all []entry) ([]entry, bool) {
		var live []entry
		for _, e := range all {
			if !expired(e) {
				live = append(live, e)
			}
		}
		if len(live) >= d.concurrency {
			return nil, false
		}
		mine := entry{NodeID: d.node, Created: time.Now().UTC(), TTL: d.ttl}
		mine.Metadata.Unschedulable = unschedulable
		return append(live, mine), true
	})
}

func (d *double) release(ctx context.Context) error {
	_, err := d.update(ctx, func(all []entry) ([]entry, bool) {
		var rest []entry
		for _, e := range all {
			if e.NodeID != d.node {
				rest = append(rest, e)
			}
		}
		return rest, len(rest) != len(all)
	})
	return err
}

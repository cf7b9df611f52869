package source

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/open-policy-agent/opa/v1/ast"
	corev1 "k8s.io/api/core/v1"

	"github.com/rebootgate/rebootgate/engine/config"
	"github.com/rebootgate/rebootgate/engine/decision"
	"github.com/rebootgate/rebootgate/engine/policy"
)

// loader is the state of loading, owned by the Run goroutine (no locking).
type loader struct {
	// configKey is the config content last read: the bytes, or a read error.
	configKey  string
	configRead bool
	// config is the last good config; nil until one loaded.
	config *config.Resolved
	// configErr is the latest config content's error; nil when it is in force.
	configErr error
	// configEvent is the message of the last ConfigError event, so one broken file
	// gives one event rather than one per re-read.
	configEvent string

	// goodModules are the ConfigMap modules of the last set that compiled.
	goodModules     []policy.Module
	haveGoodModules bool
	// triedHash and triedConfig are the inputs of the last policy compile: the same
	// set with the same config is not compiled again (a ConfigMap update that changes
	// no module, a config poll).
	triedHash   string
	triedConfig *config.Resolved
	tried       bool
	// policyErr is the latest policy set's error; nil when it is in force.
	policyErr error
	// engine is the last engine that compiled (nil until one has); engineConfig its
	// config.
	engine       *decision.Engine
	engineConfig *config.Resolved
	// policyEvent is the message of the last PolicyError event on NodeRef, so one
	// broken set gives one event; cmEvents is the same per ConfigMap (ns/name), when
	// the events go on the ConfigMaps.
	policyEvent string
	cmEvents    map[string]string
}

// policySet is the policy ConfigMaps in the informer caches and their modules.
type policySet struct {
	// modules are sorted by name, so every agent compiles the same thing.
	modules []policy.Module
	// owner maps a module name to its ConfigMap's key, ns/name.
	owner map[string]string
	// configMaps are the cached objects by ns/name. Read-only: they are the cache's.
	configMaps map[string]*corev1.ConfigMap
	// hash identifies the modules (names and sources).
	hash string
}

// collectPolicies reads the policy ConfigMaps from the informer caches. Safe for
// concurrent use.
func (s *Source) collectPolicies() *policySet {
	set := &policySet{owner: map[string]string{}, configMaps: map[string]*corev1.ConfigMap{}}
	for _, lister := range s.listers {
		// The informers already filter by label server-side; filtering again costs
		// nothing and does not depend on it.
		cms, err := lister.List(s.selector)
		if err != nil { // listing a cache cannot fail for a valid selector
			s.log.Error("listing policy ConfigMaps from the cache", "error", err)
			continue
		}
		for _, cm := range cms {
			key := cm.Namespace + "/" + cm.Name
			set.configMaps[key] = cm
			for _, m := range configMapModules(cm) {
				set.modules = append(set.modules, m)
				set.owner[m.Name] = key
			}
		}
	}
	sortModules(set.modules)
	h := sha256.New()
	for _, m := range set.modules {
		// Lengths first, so no two different sets hash the same bytes.
		fmt.Fprintf(h, "%d:%s%d:%s", len(m.Name), m.Name, len(m.Source), m.Source)
	}
	set.hash = hex.EncodeToString(h.Sum(nil))
	return set
}

// load reads the config and the policies, builds a new engine if they changed and
// compile, and records whether the latest of both is in force. Called only from Run.
func (s *Source) load(ctx context.Context) {
	l := &s.loader
	failed := s.loadConfig(ctx)
	set := s.collectPolicies()
	if !l.tried || set.hash != l.triedHash || l.config != l.triedConfig {
		l.tried, l.triedHash, l.triedConfig = true, set.hash, l.config
		failed += s.loadPolicies(ctx, set)
	}
	next := &inForce{engine: l.engine, status: Status{
		Loaded: true, Reason: ReasonLoaded,
		Message: fmt.Sprintf("the config and %d policy module(s) from %d ConfigMap(s) are in force", len(set.modules), len(set.configMaps)),
	}}
	// The config first: with a broken config the policies were compiled against the
	// last good one, or on their own.
	var cause error
	reason := ReasonConfigError
	switch {
	case l.configErr != nil && l.policyErr != nil:
		cause = fmt.Errorf("%w; %w", l.configErr, l.policyErr)
	case l.configErr != nil:
		cause = l.configErr
	case l.policyErr != nil:
		cause, reason = l.policyErr, ReasonPolicyError
	case l.engine == nil: // cannot happen: both loaded yet no engine
		cause = errors.New("no engine was built")
	}
	if cause != nil {
		next.err = fmt.Errorf("%w: %w", ErrNotLoaded, cause)
		if l.engine == nil {
			next.err = fmt.Errorf("%w: %w", ErrNoValidPolicy, cause)
		}
		next.status = Status{Reason: reason, Message: cause.Error() + "; " + l.consequence()}
	}
	s.set(next)
	s.policyStatusMetric(next.status.Loaded, failed)
	s.loads.Add(1)
}

// consequence is what a load failure means now, for the logs and events.
func (l *loader) consequence() string {
	if l.engine == nil {
		return "no config and policy set has loaded yet, so every reboot is blocked"
	}
	return Consequence
}

// loadConfig reads the config file if its content changed, and makes it the config in
// force if it is valid, CEL included. It returns the number of failed loads (0 or 1).
func (s *Source) loadConfig(ctx context.Context) int {
	l := &s.loader
	if s.configPath == "" {
		if l.config == nil {
			l.config = s.inline
			if l.config == nil {
				l.config = config.Default()
			}
		}
		return 0
	}
	data, err := os.ReadFile(s.configPath)
	key := string(data)
	if err != nil {
		// NUL cannot start a YAML file we accept, so this never equals file bytes.
		key = "\x00" + err.Error()
	}
	if l.configRead && key == l.configKey {
		return 0 // unchanged: a poll, or a watch event about another file
	}
	l.configRead, l.configKey = true, key
	var cfg *config.Resolved
	if err == nil {
		cfg, err = config.Parse(data)
	}
	if err == nil {
		// The CEL expressions compile only in decision.New. Checking them here, with
		// the default gate alone, keeps a bad expression a config error rather than
		// something the policy ConfigMaps would be blamed for.
		_, err = decision.New(ctx, cfg, policy.DefaultModules())
	}
	if ctx.Err() != nil {
		l.configRead = false // shutting down: read it again if ever asked to
		return 0
	}
	if err != nil {
		l.configErr = fmt.Errorf("config %s: %w", s.configPath, err)
		inForce := l.consequence()
		s.log.Error("config not loaded; "+inForce, "path", s.configPath, "error", err)
		if msg := l.configErr.Error(); msg != l.configEvent {
			l.configEvent = msg
			s.recorder.Eventf(s.nodeRef, corev1.EventTypeWarning, ReasonConfigError, "%s; %s", msg, inForce)
		}
		return 1
	}
	l.config, l.configErr, l.configEvent = cfg, nil, ""
	s.log.Info("config loaded", "path", s.configPath, "pools", len(cfg.Pools))
	return 0
}

// loadPolicies compiles the default gate and the policy set with the last good config,
// reports a failure, and makes the result the last good engine if it compiles. It
// returns the number of failed loads (0 or 1).
func (s *Source) loadPolicies(ctx context.Context, set *policySet) int {
	l := &s.loader
	modules := append(policy.DefaultModules(), set.modules...)
	var (
		engine *decision.Engine
		err    error
	)
	if l.config != nil {
		engine, err = decision.New(ctx, l.config, modules)
	} else {
		// No config yet, so no engine either; compiling the policies alone still
		// reports their errors.
		_, err = policy.Compile(ctx, modules)
	}
	if ctx.Err() != nil {
		// Shutting down: a compile cut short says nothing about the policies.
		l.tried = false
		return 0
	}
	if err == nil {
		l.goodModules, l.haveGoodModules, l.policyErr, l.policyEvent = set.modules, true, nil, ""
		clear(l.cmEvents)
		if engine != nil {
			l.engine, l.engineConfig = engine, l.config
			s.log.Info("config and policies in force", "modules", len(modules), "configMaps", len(set.configMaps))
		}
		return 0
	}

	l.policyErr = fmt.Errorf("policy ConfigMaps: %w", err)
	inForce := l.consequence()
	s.log.Error("policies not loaded; "+inForce, "error", err)
	s.policyEvents(set, err, inForce)
	if l.config != nil && l.haveGoodModules && l.engineConfig != l.config {
		// The config changed and is good: the last good set for the reboots in
		// progress is the new config with the last good policies, rather than a config
		// held back for someone else's broken module.
		engine, err := decision.New(ctx, l.config, append(policy.DefaultModules(), l.goodModules...))
		if err != nil {
			s.log.Error("the last good policies do not compile with the new config", "error", err)
			return 1
		}
		l.engine, l.engineConfig = engine, l.config
		s.log.Info("new config with the last good policies kept for the reboots in progress", "modules", len(l.goodModules))
	}
	return 1
}

// policyEvents emits the PolicyError events of a failed compile, each message once: on
// NodeRef, or with PolicyEventsOnConfigMaps on each ConfigMap at fault (on NodeRef when
// no ConfigMap is, as when only the embedded gate was compiled).
func (s *Source) policyEvents(set *policySet, err error, inForce string) {
	l := &s.loader
	if !s.cmEvents || len(set.configMaps) == 0 {
		if msg := l.policyErr.Error(); msg != l.policyEvent {
			l.policyEvent = msg
			s.recorder.Eventf(s.nodeRef, corev1.EventTypeWarning, ReasonPolicyError, "%s; %s", msg, inForce)
		}
		return
	}
	if l.cmEvents == nil {
		l.cmEvents = map[string]string{}
	}
	for key, msg := range statuses(err, set) {
		if msg == "" || l.cmEvents[key] == msg {
			if msg == "" {
				delete(l.cmEvents, key)
			}
			continue
		}
		l.cmEvents[key] = msg
		cm := set.configMaps[key]
		ref := &corev1.ObjectReference{Kind: "ConfigMap", APIVersion: "v1", Namespace: cm.Namespace, Name: cm.Name, UID: cm.UID}
		s.recorder.Eventf(ref, corev1.EventTypeWarning, ReasonPolicyError, "%s; %s", msg, inForce)
	}
}

// statuses attributes a compile error to the ConfigMaps whose modules it is in; an
// error no ConfigMap owns (in the default gate, say a rule conflicting with an
// operator's, or with no location) is the set's as a whole and goes to every one.
// It returns each ConfigMap's error message; a ConfigMap not in the map is ok.
func statuses(err error, set *policySet) map[string]string {
	out := map[string]string{}
	for key := range set.configMaps {
		out[key] = ""
	}
	if err == nil {
		return out
	}
	perConfigMap := map[string][]string{}
	var general []string
	var compileErr *policy.CompileError
	if errors.As(err, &compileErr) {
		for _, e := range compileErr.Errors {
			msg := (&policy.CompileError{Errors: ast.Errors{e}}).Error() // file:line: code: message
			if e.Location != nil {
				if key, ok := set.owner[e.Location.File]; ok {
					perConfigMap[key] = append(perConfigMap[key], msg)
					continue
				}
			}
			general = append(general, msg)
		}
	} else {
		general = append(general, err.Error())
	}
	for key := range set.configMaps {
		out[key] = strings.Join(append(perConfigMap[key], general...), "; ")
	}
	return out
}

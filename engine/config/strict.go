package config

import (
	"fmt"
	"reflect"
	"sort"
	"strings"
)

// unknownFields walks a generically decoded document alongside the Go type it is meant
// for and reports every key the type does not have, with its full path. The JSON
// decoder's own strict mode stops at the first such key and names no path.
func unknownFields(doc any, t reflect.Type, path string, e *errs) {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.Struct:
		m, ok := doc.(map[string]any)
		if !ok {
			return // a type error, reported by the decoder
		}
		fields := map[string]reflect.Type{}
		for i := range t.NumField() {
			f := t.Field(i)
			name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
			if name == "" || name == "-" {
				continue
			}
			fields[name] = f.Type
		}
		keys := make([]string, 0, len(m))
		for k := range m {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			ft, ok := fields[k]
			if !ok {
				e.add(join(path, k), "unknown field (known fields: %s)", knownList(fields))
				continue
			}
			unknownFields(m[k], ft, join(path, k), e)
		}
	case reflect.Slice:
		list, ok := doc.([]any)
		if !ok {
			return
		}
		for i, v := range list {
			unknownFields(v, t.Elem(), fmt.Sprintf("%s[%d]", path, i), e)
		}
	}
}

func knownList(fields map[string]reflect.Type) string {
	names := make([]string, 0, len(fields))
	for n := range fields {
		names = append(names, n)
	}
	sort.Strings(names)
	return strings.Join(names, ", ")
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

package config

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"reflect"

	"sigs.k8s.io/yaml"
)

// Load reads and validates a config file.
func Load(path string) (*Resolved, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading config: %w", err)
	}
	return Parse(data)
}

// Parse decodes a config strictly and validates it.
func Parse(data []byte) (*Resolved, error) {
	cfg, err := Decode(data)
	if err != nil {
		return nil, err
	}
	return Resolve(cfg)
}

// Decode decodes a config strictly: unknown keys, duplicate keys and wrong types are
// errors naming the field.
func Decode(data []byte) (*Config, error) {
	var generic any
	if err := yaml.Unmarshal(data, &generic); err != nil {
		return nil, fmt.Errorf("not valid YAML: %w", err)
	}
	if generic == nil {
		return nil, errors.New("empty document: want apiVersion: " + APIVersion + ", kind: " + Kind)
	}
	if _, ok := generic.(map[string]any); !ok {
		return nil, fmt.Errorf("top level: want a mapping with apiVersion: %s, kind: %s", APIVersion, Kind)
	}
	var e errs
	unknownFields(generic, reflect.TypeFor[Config](), "", &e)
	if err := e.err(); err != nil {
		return nil, err
	}
	var cfg Config
	if err := yaml.UnmarshalStrict(data, &cfg); err != nil {
		var typeErr *json.UnmarshalTypeError
		if errors.As(err, &typeErr) {
			return nil, &FieldError{Path: typeErr.Field, Msg: fmt.Sprintf("%s is not a %s", typeErr.Value, typeName(typeErr.Type))}
		}
		return nil, fmt.Errorf("decoding config: %w", err)
	}
	return &cfg, nil
}

func typeName(t reflect.Type) string {
	if t == nil {
		return "valid value"
	}
	switch t.Kind() {
	case reflect.String:
		return "string"
	case reflect.Bool:
		return "boolean (true or false)"
	case reflect.Slice:
		return "list"
	case reflect.Map, reflect.Struct:
		return "mapping"
	case reflect.Int, reflect.Int32, reflect.Int64:
		return "number"
	}
	return t.String()
}

package config

import (
	"fmt"
	"strings"
)

// FieldError is a problem with one field of the config.
type FieldError struct {
	// Path is the field path, e.g. pools[1].windows[0].startTime.
	Path string
	// Msg says what is wrong, quoting the bad value.
	Msg string
}

func (e *FieldError) Error() string { return e.Path + ": " + e.Msg }

// ErrorList is every problem found in a config. It prints on one line.
type ErrorList []*FieldError

func (l ErrorList) Error() string {
	msgs := make([]string, len(l))
	for i, e := range l {
		msgs[i] = e.Error()
	}
	return strings.Join(msgs, "; ")
}

// Unwrap lets errors.As find each FieldError.
func (l ErrorList) Unwrap() []error {
	errs := make([]error, len(l))
	for i, e := range l {
		errs[i] = e
	}
	return errs
}

// errs collects field errors while validating.
type errs struct{ list ErrorList }

func (e *errs) add(path, format string, args ...any) {
	e.list = append(e.list, &FieldError{Path: path, Msg: fmt.Sprintf(format, args...)})
}

func (e *errs) addErr(path string, err error) {
	e.list = append(e.list, &FieldError{Path: path, Msg: err.Error()})
}

func (e *errs) err() error {
	if len(e.list) == 0 {
		return nil
	}
	return e.list
}

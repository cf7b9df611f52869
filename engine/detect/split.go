package detect

import (
	"errors"
	"fmt"
	"strings"
)

// SplitCommand splits a command line into words the way a POSIX shell does, without
// running a shell: the form of kured's --reboot-sentinel-command.
//
//   - Blanks (space, tab, newline) separate words.
//   - 'single quotes' keep everything literally, backslashes included.
//   - "double quotes" keep everything literally except that a backslash escapes
//     $ ` " \ and newline (a backslash-newline disappears); before another character
//     the backslash stays.
//   - Outside quotes a backslash makes the next character literal; a backslash-newline
//     disappears.
//   - Quotes join with adjacent text ("a"'b'c is one word abc); empty quotes, double
//     or single, make an empty word.
//   - A # at the start of a word starts a comment that runs to the end of the line.
//
// There is no expansion of any kind ($VAR, ~, globs) and no operators: |, &&, ;, < and
// > are ordinary characters. To use them, run a shell: sh -c 'test -f /x && exit 0'.
// An unterminated quote, a trailing backslash or an empty command is an error.
func SplitCommand(s string) ([]string, error) {
	var (
		words  []string
		cur    strings.Builder
		inWord bool // cur holds a word, possibly empty ("")
	)
	rs := []rune(s)
	for i := 0; i < len(rs); i++ {
		r := rs[i]
		switch {
		case r == ' ' || r == '\t' || r == '\n':
			if inWord {
				words = append(words, cur.String())
				cur.Reset()
				inWord = false
			}
		case r == '#' && !inWord:
			for i < len(rs) && rs[i] != '\n' {
				i++
			}
		case r == '\\':
			if i+1 >= len(rs) {
				return nil, errors.New("split command: trailing backslash")
			}
			i++
			if rs[i] == '\n' {
				continue // line continuation
			}
			cur.WriteRune(rs[i])
			inWord = true
		case r == '\'':
			end := i + 1
			for end < len(rs) && rs[end] != '\'' {
				end++
			}
			if end >= len(rs) {
				return nil, fmt.Errorf("split command: unterminated single quote at offset %d", runeOffset(rs, i))
			}
			cur.WriteString(string(rs[i+1 : end]))
			i = end
			inWord = true
		case r == '"':
			start := i
			i++
			for ; i < len(rs) && rs[i] != '"'; i++ {
				if rs[i] == '\\' && i+1 < len(rs) {
					switch rs[i+1] {
					case '$', '`', '"', '\\':
						i++
						cur.WriteRune(rs[i])
						continue
					case '\n':
						i++
						continue
					}
				}
				cur.WriteRune(rs[i])
			}
			if i >= len(rs) {
				return nil, fmt.Errorf("split command: unterminated double quote at offset %d", runeOffset(rs, start))
			}
			inWord = true
		default:
			cur.WriteRune(r)
			inWord = true
		}
	}
	if inWord {
		words = append(words, cur.String())
	}
	if len(words) == 0 {
		return nil, errors.New("split command: empty command")
	}
	return words, nil
}

// runeOffset is the byte offset of rune i, for error messages.
func runeOffset(rs []rune, i int) int {
	return len(string(rs[:i]))
}

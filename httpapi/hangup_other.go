//go:build !unix

package httpapi

import "syscall"

// peek is not available here: the watch sees the socket as still open
// (EAGAIN) until it is stopped, so hang-ups go unnoticed, as without it.
func peek(uintptr, []byte) (int, syscall.Sockaddr, error) {
	return 0, nil, syscall.EAGAIN
}

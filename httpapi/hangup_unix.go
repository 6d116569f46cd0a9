//go:build unix

package httpapi

import "syscall"

// peek reads what the socket holds without taking it off the socket.
func peek(fd uintptr, b []byte) (int, syscall.Sockaddr, error) {
	return syscall.Recvfrom(int(fd), b, syscall.MSG_PEEK)
}

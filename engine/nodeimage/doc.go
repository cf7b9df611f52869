// Package nodeimage parses the AKS node image version that the
// kubernetes.azure.com/node-image-version node label carries.
//
// The label is not semantic versioning. It is FAMILY-SKU-BUILD, for example
// AKSUbuntu-2204gen2containerd-202509.23.0: the image family (AKSUbuntu), the
// SKU naming the OS release, VM generation, CPU architecture, container
// runtime and other features (2204gen2containerd), and a dated build
// (YYYYMM.DD.patch, or YYYY.MM.DD on old images). Windows labels such as
// AKSWindows-23H2-gen2 carry no date. [Parse] splits a label into a
// [Version]; [Compare] orders versions by build date and patch.
//
// The package is pure: no I/O, no clock.
package nodeimage

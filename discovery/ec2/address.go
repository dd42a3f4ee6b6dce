package ec2

import (
	"fmt"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"
)

// AddressType names which of an instance's addresses the gateway is given.
type AddressType string

// The address kinds an operator can choose. Private DNS is the default: it resolves inside the
// VPC and matches the host name in the DCV server's certificate.
const (
	AddressPrivateDNS AddressType = "private-dns"
	AddressPrivateIP  AddressType = "private-ip"
	AddressPublicDNS  AddressType = "public-dns"
	AddressPublicIP   AddressType = "public-ip"
	AddressIPv6       AddressType = "ipv6"
)

// Validate reports an address kind that is not one of the constants.
func (a AddressType) Validate() error {
	switch a {
	case AddressPrivateDNS, AddressPrivateIP, AddressPublicDNS, AddressPublicIP, AddressIPv6:
		return nil
	}
	return fmt.Errorf("%q is not one of private-dns, private-ip, public-dns, public-ip, ipv6", string(a))
}

// pick returns the instance's address of kind a, or its private IP (fellBack true) when the
// instance has none of that kind, as in a VPC without DNS host names.
func (a AddressType) pick(inst *types.Instance) (host string, fellBack bool) {
	switch a {
	case AddressPrivateDNS:
		host = aws.ToString(inst.PrivateDnsName)
	case AddressPrivateIP:
		host = aws.ToString(inst.PrivateIpAddress)
	case AddressPublicDNS:
		host = aws.ToString(inst.PublicDnsName)
	case AddressPublicIP:
		host = aws.ToString(inst.PublicIpAddress)
	case AddressIPv6:
		host = aws.ToString(inst.Ipv6Address)
	}
	if host != "" {
		return host, false
	}
	return aws.ToString(inst.PrivateIpAddress), a != AddressPrivateIP
}

package pods

import (
	"testing"

	"github.com/ebpfnet/ebpfnet/internal/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

/* Everything is static inline in CBarriers.h; SwiftPM wants one source file per C target. */
#include "CBarriers.h"

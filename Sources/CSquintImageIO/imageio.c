#include "squint_imageio.h"

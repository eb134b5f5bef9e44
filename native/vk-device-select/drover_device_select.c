/*
 * VK_LAYER_DROVER_device_select: a Vulkan layer that shows a process exactly one GPU.
 *
 * Why: Dawn (dawn.node) selects an adapter by device name only, so on a host with several
 * identical GPUs (8x "NVIDIA H200") every process would take the first one. No Vulkan loader
 * or NVIDIA driver setting hides one of several identical devices (the loader's filters match
 * vendor/device ids, which identical GPUs share; Mesa's device-select layer needs Mesa and
 * X11/Wayland libraries that a GPU server lacks). This layer sits between Dawn and the driver
 * and answers vkEnumeratePhysicalDevices with one device:
 *
 *   DROVER_VK_DEVICE_NAME     keep only devices whose VkPhysicalDeviceProperties::deviceName is this
 *   DROVER_VK_DEVICE_ORDINAL  ... and of those, the one at this position (0-based) in the order
 *                             the loader returns them; default 0
 *
 * No match leaves the process with no device at all (never a different one). Without
 * DROVER_VK_DEVICE_NAME the layer changes nothing. drover enables it per process with
 * VK_ADD_LAYER_PATH + VK_INSTANCE_LAYERS (src/model/vulkan-device-select.ts).
 *
 * Self-contained: the few loader-interface types are declared here (their layout is fixed by
 * the Vulkan ABI), so it builds with a bare C compiler: cc -shared -fPIC -O2.
 */
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define EXPORT __attribute__((visibility("default")))

typedef int32_t VkResult;
#define VK_SUCCESS 0
#define VK_INCOMPLETE 5
#define VK_ERROR_OUT_OF_HOST_MEMORY (-1)
#define VK_ERROR_INITIALIZATION_FAILED (-3)

typedef struct VkInstance_T *VkInstance;
typedef struct VkPhysicalDevice_T *VkPhysicalDevice;
typedef void (*PFN_vkVoidFunction)(void);
typedef PFN_vkVoidFunction (*PFN_vkGetInstanceProcAddr)(VkInstance, const char *);
typedef PFN_vkVoidFunction (*PFN_GetPhysicalDeviceProcAddr)(VkInstance, const char *);

#define VK_STRUCTURE_TYPE_LOADER_INSTANCE_CREATE_INFO 47
#define VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_GROUP_PROPERTIES 1000070000
#define VK_LAYER_LINK_INFO 0
#define VK_MAX_DEVICE_GROUP_SIZE 32
#define VK_DEVICE_NAME_OFFSET 20 /* apiVersion, driverVersion, vendorID, deviceID, deviceType */

typedef struct {
  int32_t sType;
  const void *pNext;
} VkChainHeader;

typedef struct VkLayerInstanceLink_ {
  struct VkLayerInstanceLink_ *pNext;
  PFN_vkGetInstanceProcAddr pfnNextGetInstanceProcAddr;
  PFN_GetPhysicalDeviceProcAddr pfnNextGetPhysicalDeviceProcAddr;
} VkLayerInstanceLink;

typedef struct {
  int32_t sType;
  const void *pNext;
  int32_t function;
  union {
    VkLayerInstanceLink *pLayerInfo;
    void *other[2];
  } u;
} VkLayerInstanceCreateInfo;

typedef struct {
  int32_t sType;
  const void *pNext;
  /* flags, application info, layers and extensions follow; passed on untouched */
} VkInstanceCreateInfo;

typedef struct {
  int32_t sType;
  void *pNext;
  uint32_t physicalDeviceCount;
  VkPhysicalDevice physicalDevices[VK_MAX_DEVICE_GROUP_SIZE];
  uint32_t subsetAllocation;
} VkPhysicalDeviceGroupProperties;

typedef struct {
  int32_t sType; /* LAYER_NEGOTIATE_INTERFACE_STRUCT = 1 */
  void *pNext;
  uint32_t loaderLayerInterfaceVersion;
  PFN_vkGetInstanceProcAddr pfnGetInstanceProcAddr;
  PFN_vkVoidFunction pfnGetDeviceProcAddr;
  PFN_GetPhysicalDeviceProcAddr pfnGetPhysicalDeviceProcAddr;
} VkNegotiateLayerInterface;

typedef VkResult (*PFN_vkCreateInstance)(const VkInstanceCreateInfo *, const void *, VkInstance *);
typedef void (*PFN_vkDestroyInstance)(VkInstance, const void *);
typedef VkResult (*PFN_vkEnumeratePhysicalDevices)(VkInstance, uint32_t *, VkPhysicalDevice *);
typedef VkResult (*PFN_vkEnumeratePhysicalDeviceGroups)(VkInstance, uint32_t *, VkPhysicalDeviceGroupProperties *);
typedef void (*PFN_vkGetPhysicalDeviceProperties)(VkPhysicalDevice, void *);

/* What the layer keeps per instance: the next layer's entry points, looked up while the instance
   is created (afterwards the loader's terminator answers with the top of the chain: a loop). */
typedef struct Instance {
  struct Instance *next;
  VkInstance handle;
  PFN_vkGetInstanceProcAddr gipa;
  PFN_GetPhysicalDeviceProcAddr gpdpa;
  PFN_vkDestroyInstance destroy;
  PFN_vkEnumeratePhysicalDevices enumerate;
  PFN_vkEnumeratePhysicalDeviceGroups enumerate_groups;
  PFN_vkEnumeratePhysicalDeviceGroups enumerate_groups_khr;
  PFN_vkGetPhysicalDeviceProperties properties;
} Instance;

static Instance *instances;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;

static Instance *find(VkInstance handle) {
  pthread_mutex_lock(&lock);
  Instance *it = instances;
  while (it && it->handle != handle) it = it->next;
  pthread_mutex_unlock(&lock);
  return it;
}

static VkResult create_instance(const VkInstanceCreateInfo *info, const void *allocator, VkInstance *out) {
  VkLayerInstanceCreateInfo *link = (VkLayerInstanceCreateInfo *)info->pNext;
  while (link && !(link->sType == VK_STRUCTURE_TYPE_LOADER_INSTANCE_CREATE_INFO && link->function == VK_LAYER_LINK_INFO))
    link = (VkLayerInstanceCreateInfo *)link->pNext;
  if (!link || !link->u.pLayerInfo) return VK_ERROR_INITIALIZATION_FAILED;
  PFN_vkGetInstanceProcAddr gipa = link->u.pLayerInfo->pfnNextGetInstanceProcAddr;
  PFN_GetPhysicalDeviceProcAddr gpdpa = link->u.pLayerInfo->pfnNextGetPhysicalDeviceProcAddr;
  /* The next layer reads the link after ours. */
  link->u.pLayerInfo = link->u.pLayerInfo->pNext;
  PFN_vkCreateInstance next_create = (PFN_vkCreateInstance)gipa(NULL, "vkCreateInstance");
  if (!next_create) return VK_ERROR_INITIALIZATION_FAILED;
  Instance *entry = calloc(1, sizeof *entry);
  if (!entry) return VK_ERROR_OUT_OF_HOST_MEMORY;
  VkResult result = next_create(info, allocator, out);
  if (result != VK_SUCCESS) {
    free(entry);
    return result;
  }
  entry->handle = *out;
  entry->gipa = gipa;
  entry->gpdpa = gpdpa;
  entry->destroy = (PFN_vkDestroyInstance)gipa(*out, "vkDestroyInstance");
  entry->enumerate = (PFN_vkEnumeratePhysicalDevices)gipa(*out, "vkEnumeratePhysicalDevices");
  entry->enumerate_groups = (PFN_vkEnumeratePhysicalDeviceGroups)gipa(*out, "vkEnumeratePhysicalDeviceGroups");
  entry->enumerate_groups_khr = (PFN_vkEnumeratePhysicalDeviceGroups)gipa(*out, "vkEnumeratePhysicalDeviceGroupsKHR");
  entry->properties = (PFN_vkGetPhysicalDeviceProperties)gipa(*out, "vkGetPhysicalDeviceProperties");
  pthread_mutex_lock(&lock);
  entry->next = instances;
  instances = entry;
  pthread_mutex_unlock(&lock);
  return VK_SUCCESS;
}

static void destroy_instance(VkInstance handle, const void *allocator) {
  pthread_mutex_lock(&lock);
  Instance **at = &instances;
  while (*at && (*at)->handle != handle) at = &(*at)->next;
  Instance *entry = *at;
  if (entry) *at = entry->next;
  pthread_mutex_unlock(&lock);
  if (!entry) return;
  if (entry->destroy) entry->destroy(handle, allocator);
  free(entry);
}

/* The one device this process may see, or NULL (none matches). Sets *filtering to 0 when no
   selection is configured. */
static VkResult selected_device(Instance *entry, VkPhysicalDevice *chosen, int *filtering) {
  const char *name = getenv("DROVER_VK_DEVICE_NAME");
  const char *ordinal_text = getenv("DROVER_VK_DEVICE_ORDINAL");
  *chosen = NULL;
  *filtering = name && *name;
  if (!*filtering) return VK_SUCCESS;
  long ordinal = ordinal_text && *ordinal_text ? strtol(ordinal_text, NULL, 10) : 0;
  PFN_vkEnumeratePhysicalDevices enumerate = entry->enumerate;
  PFN_vkGetPhysicalDeviceProperties properties = entry->properties;
  if (!enumerate || !properties) return VK_ERROR_INITIALIZATION_FAILED;
  uint32_t count = 0;
  VkResult result = enumerate(entry->handle, &count, NULL);
  if (result != VK_SUCCESS || count == 0) return result;
  VkPhysicalDevice *all = calloc(count, sizeof *all);
  if (!all) return VK_ERROR_OUT_OF_HOST_MEMORY;
  result = enumerate(entry->handle, &count, all);
  if (result == VK_SUCCESS || result == VK_INCOMPLETE) {
    result = VK_SUCCESS;
    long seen = 0;
    /* VkPhysicalDeviceProperties is 824 bytes; a generous, aligned buffer stays valid if it grows. */
    static _Thread_local union { uint64_t align; unsigned char bytes[4096]; } props;
    for (uint32_t i = 0; i < count; i++) {
      properties(all[i], props.bytes);
      if (strncmp((const char *)props.bytes + VK_DEVICE_NAME_OFFSET, name, 256) != 0) continue;
      if (seen++ == ordinal) {
        *chosen = all[i];
        break;
      }
    }
  }
  free(all);
  return result;
}

static VkResult enumerate_physical_devices(VkInstance handle, uint32_t *count, VkPhysicalDevice *devices) {
  Instance *entry = find(handle);
  if (!entry) return VK_ERROR_INITIALIZATION_FAILED;
  VkPhysicalDevice chosen;
  int filtering;
  VkResult result = selected_device(entry, &chosen, &filtering);
  if (!filtering) return entry->enumerate ? entry->enumerate(handle, count, devices) : VK_ERROR_INITIALIZATION_FAILED;
  if (result != VK_SUCCESS) return result;
  uint32_t available = chosen ? 1 : 0;
  if (!devices) {
    *count = available;
    return VK_SUCCESS;
  }
  if (*count < available) {
    *count = 0;
    return VK_INCOMPLETE;
  }
  *count = available;
  if (chosen) devices[0] = chosen;
  return VK_SUCCESS;
}

/* Groups must agree with the device list: one group holding the chosen device alone. */
static VkResult enumerate_groups(VkInstance handle, uint32_t *count, VkPhysicalDeviceGroupProperties *groups, int khr) {
  Instance *entry = find(handle);
  if (!entry) return VK_ERROR_INITIALIZATION_FAILED;
  VkPhysicalDevice chosen;
  int filtering;
  VkResult result = selected_device(entry, &chosen, &filtering);
  if (!filtering) {
    PFN_vkEnumeratePhysicalDeviceGroups next = khr ? entry->enumerate_groups_khr : entry->enumerate_groups;
    return next ? next(handle, count, groups) : VK_ERROR_INITIALIZATION_FAILED;
  }
  if (result != VK_SUCCESS) return result;
  uint32_t available = chosen ? 1 : 0;
  if (!groups) {
    *count = available;
    return VK_SUCCESS;
  }
  if (*count < available) {
    *count = 0;
    return VK_INCOMPLETE;
  }
  *count = available;
  if (chosen) {
    groups[0].physicalDeviceCount = 1;
    memset(groups[0].physicalDevices, 0, sizeof groups[0].physicalDevices);
    groups[0].physicalDevices[0] = chosen;
    groups[0].subsetAllocation = 0;
  }
  return VK_SUCCESS;
}

static VkResult enumerate_groups_core(VkInstance handle, uint32_t *count, VkPhysicalDeviceGroupProperties *groups) {
  return enumerate_groups(handle, count, groups, 0);
}

static VkResult enumerate_groups_khr(VkInstance handle, uint32_t *count, VkPhysicalDeviceGroupProperties *groups) {
  return enumerate_groups(handle, count, groups, 1);
}

static PFN_vkVoidFunction get_instance_proc_addr(VkInstance handle, const char *name);

static PFN_vkVoidFunction own_function(const char *name) {
  if (!strcmp(name, "vkGetInstanceProcAddr")) return (PFN_vkVoidFunction)get_instance_proc_addr;
  if (!strcmp(name, "vkCreateInstance")) return (PFN_vkVoidFunction)create_instance;
  if (!strcmp(name, "vkDestroyInstance")) return (PFN_vkVoidFunction)destroy_instance;
  if (!strcmp(name, "vkEnumeratePhysicalDevices")) return (PFN_vkVoidFunction)enumerate_physical_devices;
  if (!strcmp(name, "vkEnumeratePhysicalDeviceGroups")) return (PFN_vkVoidFunction)enumerate_groups_core;
  if (!strcmp(name, "vkEnumeratePhysicalDeviceGroupsKHR")) return (PFN_vkVoidFunction)enumerate_groups_khr;
  return NULL;
}

static PFN_vkVoidFunction get_instance_proc_addr(VkInstance handle, const char *name) {
  PFN_vkVoidFunction own = own_function(name);
  if (own) return own;
  if (!handle) return NULL;
  Instance *entry = find(handle);
  return entry ? entry->gipa(handle, name) : NULL;
}

static PFN_vkVoidFunction get_physical_device_proc_addr(VkInstance handle, const char *name) {
  Instance *entry = find(handle);
  return entry && entry->gpdpa ? entry->gpdpa(handle, name) : NULL;
}

EXPORT VkResult vkNegotiateLoaderLayerInterfaceVersion(VkNegotiateLayerInterface *negotiate) {
  if (!negotiate || negotiate->loaderLayerInterfaceVersion < 2) return VK_ERROR_INITIALIZATION_FAILED;
  negotiate->loaderLayerInterfaceVersion = 2;
  negotiate->pfnGetInstanceProcAddr = get_instance_proc_addr;
  /* Device-level calls go straight to the driver: the layer touches instance functions only. */
  negotiate->pfnGetDeviceProcAddr = NULL;
  negotiate->pfnGetPhysicalDeviceProcAddr = get_physical_device_proc_addr;
  return VK_SUCCESS;
}
